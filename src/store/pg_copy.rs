//! A PostgreSQL client that can leave a `COPY … FROM STDIN` open between statements
//! ([`PgLink`]), so the ingest writer streams each new event to the server as soon as it is
//! decided instead of after the whole group (`store::pg_events`).
//!
//! **Why.** On a PostgreSQL store the writer's time (deciding the events) and the server's time
//! (inserting them, mostly the unique key `events_key`) used to follow each other: the group
//! was decided, then written in one `COPY` while the writer waited. With the `COPY` open while
//! the writer decides, the server inserts the rows of the previous chunk meanwhile (about 64 KiB
//! are sent at a time), and the writer's share of the wall time overlaps the server's.
//!
//! **The rule that keeps it exact.** Every other request on the connection first ends the
//! open `COPY` ([`PgLink::client`]): the rows sent so far are then in the table (in this
//! transaction), exactly as if the `COPY` had run in full before that statement; an error the
//! server met on them (a stored key: `events_key`) is that request's error, so nothing after
//! it runs in the transaction, which rolls back. Before `ROLLBACK`, [`PgLink::abort_copy`]
//! drops it instead: the client sends `CopyFail`, and the server discards the rows.
//!
//! **Why a self-referential struct.** The `postgres` crate's `CopyInWriter` borrows the client
//! mutably for as long as it is open; keeping it across calls means keeping both in one value.
//! `ouroboros` builds that value safely (the client boxed, the writer borrowing it) and gives
//! the client back when the writer has finished.

use super::Result;
use std::io::Write;

/// A client with an open `COPY … FROM STDIN` (see the module docs).
#[ouroboros::self_referencing]
struct OpenCopy {
    client: Box<postgres::Client>,
    /// The `COPY` statement, to tell whether the next rows continue it.
    sql: &'static str,
    /// What ends the data (the binary format's trailer), written before `finish`.
    trailer: &'static [u8],
    #[borrows(mut client)]
    #[not_covariant]
    writer: Option<postgres::CopyInWriter<'this>>,
}

enum State {
    Idle(Box<postgres::Client>),
    Copying(OpenCopy),
    /// Only between taking the old state and putting the new one.
    Moving,
}

/// A PostgreSQL client, idle or with an open `COPY … FROM STDIN` (module docs).
pub struct PgLink {
    state: State,
}

impl PgLink {
    pub fn new(client: postgres::Client) -> PgLink {
        PgLink { state: State::Idle(Box::new(client)) }
    }

    /// The client for any other request, after ending the open `COPY` if there is one (the
    /// rows sent so far are then in the table). Errors: the server's answer to that `COPY`
    /// (a unique violation, a lost connection); the client is idle again either way.
    pub fn client(&mut self) -> Result<&mut postgres::Client> {
        self.end_copy()?;
        match &mut self.state {
            State::Idle(c) => Ok(c),
            _ => unreachable!("end_copy leaves the client idle"),
        }
    }

    /// Whether a `COPY` is open (ended by the next request).
    pub fn copying(&self) -> bool {
        matches!(self.state, State::Copying(_))
    }

    /// Whether the connection is known to be gone. While a `COPY` is open the client is the
    /// writer's: not known (the `COPY`'s end says).
    pub fn is_closed(&self) -> bool {
        match &self.state {
            State::Idle(c) => c.is_closed(),
            State::Copying(_) => false,
            State::Moving => unreachable!("the state is always put back"),
        }
    }

    /// Sends `data` (whole rows) into the `COPY` `sql`, opening it (and sending `header`) when
    /// it is not the one open; `trailer` is sent when it ends. Whether the server took the
    /// rows is known when the `COPY` ends: at the next request on this client. Returns whether
    /// this call opened it (one more round trip).
    pub fn copy_rows(&mut self, sql: &'static str, header: &[u8], trailer: &'static [u8], data: &[u8]) -> Result<bool> {
        let opened = match &self.state {
            State::Copying(open) if *open.borrow_sql() == sql => false,
            _ => {
                self.end_copy()?;
                let State::Idle(client) = std::mem::replace(&mut self.state, State::Moving) else {
                    unreachable!("end_copy leaves the client idle")
                };
                let built =
                    OpenCopyTryBuilder { client, sql, trailer, writer_builder: |c: &mut Box<postgres::Client>| c.copy_in(sql).map(Some) }
                        .try_build_or_recover();
                match built {
                    Ok(open) => self.state = State::Copying(open),
                    Err((e, heads)) => {
                        self.state = State::Idle(heads.client);
                        return Err(e.into());
                    }
                }
                self.write(header)?;
                true
            }
        };
        self.write(data)?;
        Ok(opened)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let State::Copying(open) = &mut self.state else { unreachable!("write follows an open") };
        let written = open.with_writer_mut(|w| w.as_mut().map_or(Ok(()), |w| w.write_all(bytes)));
        written.map_err(io_error)
    }

    /// Ends the open `COPY`, if any: sends its trailer and waits for the server's answer.
    pub fn end_copy(&mut self) -> Result<()> {
        if !self.copying() {
            return Ok(());
        }
        let State::Copying(mut open) = std::mem::replace(&mut self.state, State::Moving) else { unreachable!() };
        let trailer = *open.borrow_trailer();
        let done = open.with_writer_mut(|w| match w.take() {
            Some(mut w) => {
                w.write_all(trailer).map_err(io_error)?;
                w.finish().map(|_| ()).map_err(super::StoreError::from)
            }
            None => Ok(()),
        });
        self.state = State::Idle(open.into_heads().client);
        done
    }

    /// Drops the open `COPY`, if any, without ending it: the server discards its rows and
    /// fails the statement (before `ROLLBACK`, or when the connection is given up).
    pub fn abort_copy(&mut self) {
        if self.copying() {
            let State::Copying(open) = std::mem::replace(&mut self.state, State::Moving) else { unreachable!() };
            // The writer is dropped unfinished (the client sends `CopyFail`), then the client
            // is given back.
            self.state = State::Idle(open.into_heads().client);
        }
    }
}

/// An error of `CopyInWriter::write`: the `postgres` crate wraps its own error in an
/// `io::Error`; unwrapped again, so a unique violation or a lost connection keeps its kind.
fn io_error(e: std::io::Error) -> super::StoreError {
    match e.into_inner().map(|inner| inner.downcast::<postgres::Error>()) {
        Some(Ok(pg)) => (*pg).into(),
        Some(Err(other)) => super::StoreError::Internal(format!("writing a COPY: {other}")),
        None => super::StoreError::Internal("writing a COPY failed".into()),
    }
}
