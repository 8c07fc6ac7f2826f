//! Reading Orange: the client of one source (token cache, request budget,
//! paging, typed errors) and the cursor of an incremental listing. Presets
//! of the two APIs live in `config`.

mod budget;
mod client;
pub mod cursor;
mod error;
mod token;

pub use client::{
    Detail, MAX_LISTED_ORDERS, MAX_ORDER_BYTES, MAX_PAGE_BYTES, Page, SourceClient, join_base,
};
pub use error::{ApiError, ApiErrorKind};
