//! The response [`Body`] every handler answers with, apart from the modules that
//! serve ([`crate::http`]) and route ([`crate::routes`], [`crate::runreq`]) so that
//! each of them can name it without importing another.

use std::convert::Infallible;

use hyper::body::Bytes;

/// A response body that cannot fail: whole (most routes) or streamed (`POST /v1/run`).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
