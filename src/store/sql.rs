//! One way to run a SQL statement on either backend: SQLite (embedded, the default) or
//! PostgreSQL (the shared store of issue 13).
//!
//! Store functions take a [`Tx`] — the open transaction of one backend — and run their
//! statements through [`Tx::execute`], [`Tx::query_row`], [`Tx::query_opt`], [`Tx::query_map`]
//! and [`Tx::for_each`]. A statement is written once, in the SQL both engines accept:
//!
//! - placeholders are SQLite's `?1`, `?2`, … (or a bare `?`); for PostgreSQL they are rewritten
//!   to `$1`, `$2`, … once per statement text and the prepared statement is cached per
//!   connection, as rusqlite's `prepare_cached` does on SQLite;
//! - `INSERT … ON CONFLICT (…) DO NOTHING / DO UPDATE`, `RETURNING`, `COALESCE`, `CAST(x AS
//!   BIGINT)` and the function `meterd_decimal_add(a, b)` (registered in SQLite, defined by the
//!   PostgreSQL schema) mean the same on both; `INSERT OR IGNORE`, `total()`, `IFNULL` and
//!   pragmas are SQLite's own and stay in code that only SQLite runs ([`Tx::backend`] tells).
//! - text sorts by bytes on SQLite but by the database's collation on PostgreSQL: an
//!   `ORDER BY` on a text id names its column through [`Tx::by_bytes`], so a listing has one
//!   order on both. (Fixed-format ids — `metering_sn` and notice ids, hex of one length — sort
//!   alike under any collation, and keep their index order.)
//!
//! **Values.** Parameters are [`Value`]s: integers, text, exact decimals, bytes or NULL
//! ([`params!`](crate::sql_params) builds the slice). SQLite is dynamically typed, so a value is
//! bound as it is (a decimal as its exact text, as meterd has always stored decimals).
//! PostgreSQL is not: there a value is converted to the type the server inferred for its
//! placeholder — decimal text to `numeric`, an integer to `bigint`/`integer`/`numeric`, and so
//! on; a conversion that would lose anything (a fraction into an integer, text that is not a
//! number into `numeric`) is an error, never a rounding. Reading is the same in reverse:
//! [`Row::get`] turns what the column holds into the Rust type asked for (`numeric` into a
//! `Decimal`, or into the decimal text a SQLite column would hold).
//!
//! No floating point crosses this layer in either direction: a column of `real`/`double`
//! type is an error when read.

use super::{Result, StoreError};
use postgres::types::{FromSql, IsNull, ToSql, Type};
use rust_decimal::Decimal;
use std::cell::RefCell;
use std::collections::HashMap;

/// Which engine holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (one machine; the default).
    Sqlite,
    /// A PostgreSQL server shared by any number of meterd nodes.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`, as status, logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// One parameter or column value, in the few shapes meterd stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// An exact decimal (quantities, usage, charges, factors).
    Dec(Decimal),
    Blob(Vec<u8>),
}

/// A Rust value that can be bound as a statement parameter.
pub trait Param {
    fn to_value(&self) -> Value;

    /// The value as SQLite binds it, borrowing text and bytes instead of copying them (the
    /// per-statement cost on SQLite's hot paths; see [`Tx::execute`]). Decimals bind as their
    /// exact text, as [`Value::Dec`] does.
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        use rusqlite::types::{ToSqlOutput, Value as V, ValueRef};
        match self.to_value() {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Value::Text(t) => ToSqlOutput::Owned(V::Text(t)),
            Value::Dec(d) => ToSqlOutput::Owned(V::Text(d.to_string())),
            Value::Blob(b) => ToSqlOutput::Owned(V::Blob(b)),
        }
    }
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_param!(i64, i32, i16, u32, u16, u8);

impl Param for u64 {
    /// Counts and sizes meterd stores stay far below `i64::MAX`; one above it is clamped
    /// rather than wrapped to a negative number.
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl Param for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl Param for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(self.as_bytes()))
    }
}
impl Param for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        self.as_str().to_sqlite()
    }
}
impl Param for Decimal {
    fn to_value(&self) -> Value {
        Value::Dec(*self)
    }
}
impl Param for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Blob(self))
    }
}
impl Param for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        self.as_slice().to_sqlite()
    }
}
impl Param for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        sqlite_output(self)
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        (**self).to_sqlite()
    }
}
impl<T: Param> Param for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
    fn to_sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        match self {
            Some(v) => v.to_sqlite(),
            None => rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Null),
        }
    }
}

/// Builds a parameter slice: `sql_params![a, b, c]` → `&[&dyn Param]`.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::sql::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::sql::Param),+] as &[&dyn $crate::store::sql::Param] };
}
pub use crate::sql_params as params;

// ---------------------------------------------------------------------------------------------
// SQLite binding.

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(sqlite_output(self))
    }
}

/// How SQLite binds a [`Value`], borrowing its text and bytes.
fn sqlite_output(v: &Value) -> rusqlite::types::ToSqlOutput<'_> {
    use rusqlite::types::{ToSqlOutput, Value as V, ValueRef};
    match v {
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
        Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        // Decimals are stored as their exact text (see the store's module docs).
        Value::Dec(d) => ToSqlOutput::Owned(V::Text(d.to_string())),
        Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
    }
}

/// A parameter bound by SQLite through [`Param::to_sqlite`] (no copy of text or bytes).
struct SqliteParam<'a>(&'a dyn Param);

impl rusqlite::ToSql for SqliteParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.0.to_sqlite())
    }
}

/// A statement's parameters as SQLite binds them.
fn sqlite_params<'a>(params: &'a [&'a dyn Param]) -> rusqlite::ParamsFromIter<impl Iterator<Item = SqliteParam<'a>>> {
    rusqlite::params_from_iter(params.iter().map(|p| SqliteParam(*p)))
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Result<Value> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t).map_err(|_| StoreError::Corrupt("a text column holds bytes that are not UTF-8".into()))?.to_owned(),
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(r) => return Err(StoreError::Corrupt(format!("a column holds the floating-point number {r}; meterd stores none"))),
    })
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL binding: a value converted to the type the server inferred for its placeholder.

#[derive(Debug)]
struct PgParam(Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn lossy(what: &str, ty: &Type) -> BoxError {
    format!("cannot bind {what} to a parameter of type {ty} without losing it").into()
}

impl ToSql for PgParam {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, BoxError> {
        let v = &self.0;
        if *v == Value::Null {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::INT8 => int_of(v, ty)?.to_sql(ty, out),
            Type::INT4 => i32::try_from(int_of(v, ty)?).map_err(|_| lossy("a large integer", ty))?.to_sql(ty, out),
            Type::INT2 => i16::try_from(int_of(v, ty)?).map_err(|_| lossy("a large integer", ty))?.to_sql(ty, out),
            Type::BOOL => (int_of(v, ty)? != 0).to_sql(ty, out),
            Type::NUMERIC => match v {
                Value::Dec(d) => d.to_sql(ty, out),
                Value::Int(i) => Decimal::from(*i).to_sql(ty, out),
                Value::Text(s) => s.parse::<Decimal>().map_err(|_| lossy(&format!("the text {s:?}"), ty))?.to_sql(ty, out),
                _ => Err(lossy("bytes", ty)),
            },
            Type::BYTEA => match v {
                Value::Blob(b) => b.as_slice().to_sql(ty, out),
                _ => Err(lossy("a non-byte value", ty)),
            },
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => match v {
                Value::Text(s) => s.as_str().to_sql(&Type::TEXT, out),
                Value::Int(i) => i.to_string().as_str().to_sql(&Type::TEXT, out),
                Value::Dec(d) => d.to_string().as_str().to_sql(&Type::TEXT, out),
                _ => Err(lossy("bytes", ty)),
            },
            _ => Err(format!("meterd binds no parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn int_of(v: &Value, ty: &Type) -> std::result::Result<i64, BoxError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Dec(d) if d.fract().is_zero() => i64::try_from(*d).map_err(|_| lossy("a large decimal", ty)),
        Value::Text(s) => s.parse::<i64>().map_err(|_| lossy(&format!("the text {s:?}"), ty)),
        _ => Err(lossy("a fraction or bytes", ty)),
    }
}

/// A column of any type meterd uses, read into a [`Value`].
struct PgColumn(Value);

impl<'a> FromSql<'a> for PgColumn {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(PgColumn(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::NUMERIC => Value::Dec(Decimal::from_sql(ty, raw)?),
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Value::Text(String::from_sql(ty, raw)?),
            _ => return Err(format!("meterd reads no column of type {ty}").into()),
        }))
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, BoxError> {
        Ok(PgColumn(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// `?N` / `?` placeholders → `$N`, leaving quoted strings and identifiers alone.
pub(crate) fn to_pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 1;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next_bare.to_string());
                    next_bare += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            None => out.push(c),
        }
    }
    out
}

static ALL_ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`PgConn::round_trips`] summed over every connection this process opened (an upload runs
/// on two: `upload::applier`). For the bench.
pub fn round_trips_all() -> u64 {
    ALL_ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A PostgreSQL connection with its prepared-statement cache (keyed by the SQL text as
/// written, so the placeholder rewrite runs once per statement).
pub struct PgConn {
    /// The client, which may have a `COPY` open between statements (`store::pg_copy`).
    link: super::pg_copy::PgLink,
    stmts: HashMap<String, postgres::Statement>,
    /// Requests that waited for the server's answer, counted by [`PgConn::round_trips`].
    round_trips: u64,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

impl PgConn {
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn { link: super::pg_copy::PgLink::new(client), stmts: HashMap::new(), round_trips: 0 }
    }

    /// How many requests on this connection so far waited for the server's answer (each
    /// statement run through this type, each statement prepared, each batch such as `BEGIN` or
    /// `COMMIT`): on a machine with few cores every one is a client↔server switch, the cost
    /// the bulk paths exist to avoid. Statements run on [`PgConn::client`] directly are not
    /// counted. For the bench and the tests that bound statements per record.
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Counts one round trip, on this connection and in [`round_trips_all`].
    fn trip(&mut self) {
        self.round_trips += 1;
        ALL_ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        self.trip();
        let stmt = self.link.client()?.prepare(&to_pg_placeholders(sql))?;
        if self.stmts.len() >= 256 {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn query(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<postgres::Row>> {
        let stmt = self.statement(sql)?;
        let values: Vec<PgParam> = params.iter().map(|p| PgParam(p.to_value())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        self.trip();
        Ok(self.link.client()?.query(&stmt, &refs)?)
    }

    fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let values: Vec<PgParam> = params.iter().map(|p| PgParam(p.to_value())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        self.trip();
        Ok(self.link.client()?.execute(&stmt, &refs)?)
    }

    /// Runs `sql` (written with `$N` placeholders, prepared once per connection) with
    /// parameters typed by the caller — arrays for `unnest`, which [`Value`] has no shape for —
    /// and returns how many rows it changed. One round trip (the bulk writes of seal and
    /// upload: one statement for many rows).
    pub fn execute_typed(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        self.trip();
        Ok(self.link.client()?.execute(&stmt, params)?)
    }

    /// [`PgConn::execute_typed`] for a statement that returns rows, each read by `f`.
    pub fn query_typed<T>(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let stmt = self.statement(sql)?;
        self.trip();
        let rows = self.link.client()?.query(&stmt, params)?;
        rows.iter().map(|r| f(&Row::Pg(r))).collect()
    }

    /// The client, for typed statements (arrays) this layer has no [`Value`] for, after
    /// ending an open `COPY` ([`PgConn::copy_rows`]): errors are that `COPY`'s.
    pub fn client(&mut self) -> Result<&mut postgres::Client> {
        self.link.client()
    }

    /// Streams whole rows into the `COPY … FROM STDIN` `sql`, leaving it open until the next
    /// request on this connection (`store::pg_copy`): opened (with `header`) unless it is the
    /// one open, ended with `trailer`. The server's verdict on the rows comes when it ends.
    pub fn copy_rows(&mut self, sql: &'static str, header: &[u8], trailer: &'static [u8], data: &[u8]) -> Result<()> {
        if self.link.copy_rows(sql, header, trailer, data)? {
            self.trip();
        }
        Ok(())
    }

    /// Ends the open `COPY`, if any (see [`PgConn::copy_rows`]); one round trip when one was open.
    pub fn end_copy(&mut self) -> Result<()> {
        if self.link.copying() {
            self.trip();
        }
        self.link.end_copy()
    }

    /// A prepared statement for `sql` (written with `$N` or `?N` placeholders), from the cache.
    pub fn prepared(&mut self, sql: &str) -> Result<postgres::Statement> {
        self.statement(sql)
    }

    /// Runs statements with no parameters and no result (`BEGIN`, `COMMIT`, DDL).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        self.trip();
        Ok(self.link.client()?.batch_execute(sql)?)
    }

    /// `ROLLBACK`. An open `COPY` ([`PgConn::copy_rows`]) is dropped first, not ended: its rows
    /// are discarded with the rest, and an error it met does not keep the transaction from
    /// rolling back.
    pub fn rollback(&mut self) -> Result<()> {
        self.link.abort_copy();
        self.batch("ROLLBACK")
    }

    /// Whether the connection to the server is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Forgets the prepared statements (after the schema changed under them).
    pub fn clear_statements(&mut self) {
        self.stmts.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Rows.

/// One result row, of either backend.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as a [`Value`].
    pub fn value(&self, i: usize) -> Result<Value> {
        match self {
            Row::Sqlite(r) => from_sqlite(r.get_ref(i)?),
            Row::Pg(r) => Ok(r.try_get::<_, PgColumn>(i)?.0),
        }
    }

    /// Column `i` as text handed to `f`: borrowed where it lies on SQLite (no copy, for scans
    /// over every event), an owned string on PostgreSQL (a `numeric` as its decimal text).
    pub fn with_str<T>(&self, i: usize, f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        match self {
            Row::Sqlite(r) => f(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?),
            Row::Pg(_) => f(&self.get::<String>(i)?),
        }
    }

    /// Column `i` (from 0) as `T`; a NULL or a value of another kind is an error unless `T`
    /// says otherwise (`Option<_>`).
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        T::from_value(self.value(i)?).map_err(|why| StoreError::Corrupt(format!("column {i}: {why}")))
    }
}

/// A Rust type a column can be read into.
pub trait FromValue: Sized {
    /// `Err(why)` when the value is of another kind.
    fn from_value(v: Value) -> std::result::Result<Self, String>;
}

impl FromValue for Value {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        Ok(v)
    }
}

impl FromValue for i64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            // PostgreSQL's SUM of a bigint column is numeric.
            Value::Dec(d) if d.fract().is_zero() => i64::try_from(d).map_err(|_| format!("{d} is out of range for an integer")),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for u64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        let i = i64::from_value(v)?;
        u64::try_from(i).map_err(|_| format!("expected a count, found {i}"))
    }
}

impl FromValue for i32 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        let i = i64::from_value(v)?;
        i32::try_from(i).map_err(|_| format!("{i} is out of range"))
    }
}

impl FromValue for bool {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromValue for String {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            // A numeric column read as text: the same exact decimal text SQLite would hold.
            Value::Dec(d) => Ok(d.to_string()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromValue for Decimal {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Dec(d) => Ok(d),
            Value::Int(i) => Ok(Decimal::from(i)),
            Value::Text(s) => s.parse().map_err(|_| format!("{s:?} is not a decimal")),
            other => Err(format!("expected a decimal, found {other:?}")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions.

/// An open transaction of either backend (see the module docs). Obtained from
/// [`Store::write`](super::Store::write) / [`Store::read`](super::Store::read).
pub struct Tx<'c> {
    inner: Inner<'c>,
}

enum Inner<'c> {
    Sqlite(&'c rusqlite::Connection),
    Pg(RefCell<&'c mut PgConn>),
}

impl<'c> Tx<'c> {
    /// A transaction (or plain connection) of SQLite.
    pub fn sqlite(conn: &'c rusqlite::Connection) -> Tx<'c> {
        Tx { inner: Inner::Sqlite(conn) }
    }

    /// A PostgreSQL connection inside a transaction its caller began.
    pub fn postgres(conn: &'c mut PgConn) -> Tx<'c> {
        Tx { inner: Inner::Pg(RefCell::new(conn)) }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Pg(_) => Backend::Postgres,
        }
    }

    /// `column` as an `ORDER BY` term that sorts its text by bytes, as SQLite always does:
    /// PostgreSQL sorts text by the database's default collation, which for a database created
    /// with a locale (ICU `en-US`, `en_US.UTF-8`) puts `i-B` after `i-a` and may ignore `-`
    /// and `_`, so there the term is `column COLLATE "C"`. Listings ordered by an id a person
    /// chose (instances, packages, nodes, receivers) use it, so both backends list in one
    /// order whatever the database's locale. (SQLite knows no collation named `C`.)
    pub fn by_bytes(&self, column: &str) -> String {
        match self.inner {
            Inner::Sqlite(_) => column.to_string(),
            Inner::Pg(_) => format!("{column} COLLATE \"C\""),
        }
    }

    /// The SQLite connection, for code that only SQLite runs (the ingest writer's dedupe
    /// structures, pragmas). `None` on PostgreSQL.
    pub fn sqlite_conn(&self) -> Option<&'c rusqlite::Connection> {
        match self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Pg(_) => None,
        }
    }

    /// The PostgreSQL connection, for code that only PostgreSQL runs (bulk statements over
    /// arrays, which SQLite has no type for). `None` on SQLite. Do not hold it across another
    /// call on this `Tx`.
    pub fn pg(&self) -> Option<std::cell::RefMut<'_, &'c mut PgConn>> {
        match &self.inner {
            Inner::Pg(c) => Some(c.borrow_mut()),
            Inner::Sqlite(_) => None,
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(sqlite_params(params))? as u64),
            Inner::Pg(c) => c.borrow_mut().execute(sql, params),
        }
    }

    /// A statement prepared once, for a loop that runs it many times ([`Stmt::execute`]): on
    /// SQLite each [`Tx::execute`] looks its statement up in the connection's cache by its
    /// text, which costs more than a small upsert itself (the window fold writes tens of
    /// thousands of rows in one transaction). On PostgreSQL the connection's statement cache
    /// serves it as [`Tx::execute`] does.
    pub fn prepare<'t>(&'t self, sql: &'t str) -> Result<Stmt<'t, 'c>> {
        Ok(Stmt {
            inner: match &self.inner {
                Inner::Sqlite(c) => StmtInner::Sqlite(c.prepare_cached(sql)?),
                Inner::Pg(_) => StmtInner::Pg { tx: self, sql },
            },
        })
    }

    /// Calls `f` for every result row, in order.
    pub fn for_each(&self, sql: &str, params: &[&dyn Param], mut f: impl FnMut(&Row<'_>) -> Result<()>) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(sqlite_params(params))?;
                while let Some(r) = rows.next()? {
                    f(&Row::Sqlite(r))?;
                }
                Ok(())
            }
            Inner::Pg(c) => {
                let rows = c.borrow_mut().query(sql, params)?;
                for r in &rows {
                    f(&Row::Pg(r))?;
                }
                Ok(())
            }
        }
    }

    /// Every result row, each turned into a `T` by `f`.
    pub fn query_map<T>(&self, sql: &str, params: &[&dyn Param], mut f: impl FnMut(&Row<'_>) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, params, |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first result row through `f`, or `None` when there is none.
    pub fn query_opt<T>(&self, sql: &str, params: &[&dyn Param], f: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut out = None;
        self.for_each(sql, params, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The first result row through `f`; no row is an error (a statement that always returns
    /// one, like an aggregate, found none: the store is not what meterd wrote).
    pub fn query_row<T>(&self, sql: &str, params: &[&dyn Param], f: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        self.query_opt(sql, params, f)?.ok_or_else(|| StoreError::Corrupt(format!("no row from: {}", sql.trim())))
    }

    /// The first column of the one row a statement returns, as `T`.
    pub fn one<T: FromValue>(&self, sql: &str, params: &[&dyn Param]) -> Result<T> {
        self.query_row(sql, params, |r| r.get(0))
    }
}

/// A statement of a [`Tx`] prepared for repeated execution ([`Tx::prepare`]).
pub struct Stmt<'t, 'c> {
    inner: StmtInner<'t, 'c>,
}

enum StmtInner<'t, 'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Pg { tx: &'t Tx<'c>, sql: &'t str },
}

impl Stmt<'_, '_> {
    /// Runs the statement once with `params`; returns how many rows it changed.
    pub fn execute(&mut self, params: &[&dyn Param]) -> Result<u64> {
        match &mut self.inner {
            StmtInner::Sqlite(s) => Ok(s.execute(sqlite_params(params))? as u64),
            StmtInner::Pg { tx, sql } => tx.execute(sql, params),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(to_pg_placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12"), "SELECT a FROM t WHERE b = $1 AND c = $12");
        assert_eq!(to_pg_placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(to_pg_placeholders("SELECT '?1', \"a?\" FROM t WHERE x = ?2"), "SELECT '?1', \"a?\" FROM t WHERE x = $2");
    }

    #[test]
    fn sqlite_round_trips_every_kind_and_refuses_floats() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (i INTEGER, s TEXT, d TEXT, b BLOB, n TEXT)").unwrap();
        let tx = Tx::sqlite(&conn);
        let d: Decimal = "12345678901234567890.12345678".parse().unwrap();
        let none: Option<i64> = None;
        let n = tx.execute("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)", params![7_i64, "x", d, vec![1_u8, 2], none]).unwrap();
        assert_eq!(n, 1);
        let (i, s, dd, b, nn): (i64, String, Decimal, Vec<u8>, Option<String>) = tx
            .query_row("SELECT i, s, d, b, n FROM t", params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap();
        assert_eq!((i, s.as_str(), dd, b, nn), (7, "x", d, vec![1, 2], None));
        // Stored as its exact text, as meterd has always stored decimals.
        assert_eq!(tx.one::<String>("SELECT d FROM t", params![]).unwrap(), "12345678901234567890.12345678");
        assert!(tx.query_opt("SELECT i FROM t WHERE i = ?1", params![8_i64], |r| r.get::<i64>(0)).unwrap().is_none());
        assert!(tx.one::<i64>("SELECT i FROM t WHERE i = 8", params![]).is_err());
        let e = tx.one::<Value>("SELECT 1.5", params![]).unwrap_err();
        assert!(e.to_string().contains("floating-point"), "{e}");
    }

    #[test]
    fn a_prepared_statement_runs_many_times_with_its_own_parameters() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, d TEXT, b BLOB)").unwrap();
        let tx = Tx::sqlite(&conn);
        let mut ins = tx.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4) ON CONFLICT (k) DO UPDATE SET s = excluded.s").unwrap();
        let text = String::from("borrowed");
        let d: Decimal = "0.10".parse().unwrap();
        for k in 0..3_i64 {
            assert_eq!(ins.execute(params![k, text, d, Some(vec![k as u8])]).unwrap(), 1);
        }
        assert_eq!(ins.execute(params![1_i64, "again", d, None::<Vec<u8>>]).unwrap(), 1);
        drop(ins);
        let rows = tx.query_map("SELECT k, s, d, b FROM t ORDER BY k", params![], |r| {
            Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<String>(2)?, r.get::<Option<Vec<u8>>>(3)?))
        });
        let rows = rows.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], (1, "again".to_string(), "0.10".to_string(), Some(vec![1])));
        assert_eq!(rows[2], (2, "borrowed".to_string(), "0.10".to_string(), Some(vec![2])));
    }
}
