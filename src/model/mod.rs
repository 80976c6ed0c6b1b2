//! Domain types shared by every stage of the pipeline: quantities, times, events, instances,
//! windows and usage records. Nothing here does I/O or reads the clock; `now` is always a
//! parameter.
//!
//! Invariants kept by these types:
//! - a [`Quantity`] is an exact, non-negative decimal with at most 9 fractional digits and at
//!   most 1e12 for a single event; it is never converted through `f64`;
//! - times are UTC [`Timestamp`]s with nanosecond resolution; record times are rendered in the
//!   store's `yyyyMMdd'T'HHmmss'Z'` format;
//! - a [`UsageRecord`] never changes once sealed, so its canonical bytes never change either.

mod aggregation;
mod ids;
mod package;
mod properties;
mod quantity;
mod record;
mod time;
pub mod weighted;

pub use aggregation::{point_value, Aggregation, PointEvent};
pub use ids::{valid_event_id, valid_instance_id, valid_package_id};
pub use package::{deduction_order, parse_quota, split as split_quota, Package, Reset};
pub use properties::{valid_property_key, Properties, MAX_KEY_LEN, MAX_PROPERTIES, MAX_VALUE_LEN};
pub use quantity::{shorten, Quantity, QuantityError, MAX_EVENT_QUANTITY, MAX_RECORD_VALUE};
pub use record::{metering_sn, UsageRecord};
pub use time::{format_record_time, parse_rfc3339, FixedTz, Period, Timestamp, TimestampError};
pub use weighted::{LevelEvent, WeightedError};
