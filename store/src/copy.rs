//! Rows in PostgreSQL's binary `COPY` format, for
//! `COPY … FROM STDIN (FORMAT binary)`.
//!
//! The format is a fixed header, then per row a 16-bit field count and per
//! field a 32-bit length (-1 for NULL) and the value in the type's binary
//! send format, then a trailer. Values are encoded by sqlx's own `Encode`
//! implementations, the same bytes a bound parameter of that type would be,
//! so this module only adds the framing.
//!
//! A `json` column takes its text as is: storing a document verbatim costs
//! Postgres a syntax check, where `jsonb` would parse and rebuild it.

use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, Postgres};

/// `PGCOPY\n\xff\r\n\0`, then 32-bit flags and header-extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A buffer of rows in binary `COPY` format.
pub struct BinaryCopy {
    buf: PgArgumentBuffer,
    rows: usize,
}

impl Default for BinaryCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryCopy {
    pub fn new() -> Self {
        let mut buf = PgArgumentBuffer::default();
        buf.extend_from_slice(HEADER);
        Self { buf, rows: 0 }
    }

    /// Starts a row of `fields` values; exactly that many `field` calls must
    /// follow.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
        self
    }

    /// Appends one value, encoded as sqlx binds a parameter of its type; an
    /// `Option` that is `None` is a NULL.
    pub fn field<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> &mut Self {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let len = match value.encode_by_ref(&mut self.buf) {
            Ok(IsNull::No) => i32::try_from(self.buf.len() - at - 4).expect("a value under 2 GiB"),
            Ok(IsNull::Yes) => -1,
            // The types used here (uuid, text, integers, timestamps, JSON)
            // cannot fail to encode.
            Err(e) => panic!("encoding a COPY value: {e}"),
        };
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// Appends text verbatim, for a `text` or `json` column.
    pub fn raw_text(&mut self, text: &[u8]) -> &mut Self {
        let len = i32::try_from(text.len()).expect("a value under 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(text);
        self
    }

    /// Rows started so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The whole stream, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        std::mem::take(&mut *self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stream_is_the_header_and_the_trailer() {
        let bytes = BinaryCopy::new().finish();
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(bytes.len(), HEADER.len() + 2);
        assert_eq!(&bytes[bytes.len() - 2..], &[0xff, 0xff]);
    }

    #[test]
    fn a_null_is_length_minus_one_and_a_value_is_its_length_then_its_bytes() {
        let mut copy = BinaryCopy::new();
        copy.row(3)
            .field(&Option::<i32>::None)
            .field(&7i32)
            .raw_text(b"{}");
        assert_eq!(copy.rows(), 1);
        let bytes = copy.finish();
        let row = &bytes[HEADER.len()..bytes.len() - 2];
        assert_eq!(
            row,
            &[0, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 2, b'{', b'}']
        );
    }
}
