//! Stored values: a codec/version byte, then the body.
//!
//! | first byte | body |
//! |------------|------|
//! | [`EVENT_V1`] (0x01) | postcard of [`Event`] |
//! | [`DEDUPE_V1`] (0x01) | `seq: u64` BE, then the 128-bit xxh3 of the event's stored bytes, BE |
//!
//! A codec byte, once shipped, keeps its meaning forever; a new encoding gets a new byte
//! and the decoders below keep reading the old ones. The golden tests pin the bytes.

use crate::event::metadata::from_postcard;
use crate::event::{Envelope, Event, Seq};

use super::error::{Error, Result};

/// Postcard encoding of the event model as first shipped.
pub const EVENT_V1: u8 = 0x01;
/// Fixed-layout dedupe entry.
pub const DEDUPE_V1: u8 = 0x01;

/// Encode an event for the log.
pub fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.push(EVENT_V1);
    // Serializing plain data into a Vec cannot fail: no maps with non-string keys, no
    // `serialize_any`, no I/O.
    postcard::serialize_with_flavor(event, VecFlavor(out))
        .expect("postcard encoding of Event into a Vec")
}

/// Postcard output appended to a `Vec` a slice at a time (postcard's `to_extend` goes byte
/// by byte through `Extend`: encoding took 12% longer that way).
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Decode a log value; `location` names it in errors.
pub fn decode_event(bytes: &[u8], location: impl FnOnce() -> String) -> Result<Event> {
    match bytes.split_first() {
        Some((&EVENT_V1, body)) => from_postcard(body).map_err(|e| Error::Corrupt {
            location: location(),
            reason: e.to_string(),
        }),
        Some((other, _)) => Err(Error::Corrupt {
            location: location(),
            reason: format!("unknown event codec byte {other:#04x}"),
        }),
        None => Err(Error::Corrupt {
            location: location(),
            reason: "empty value".into(),
        }),
    }
}

/// The envelope of a log value alone, without decoding the body: postcard writes a struct's
/// fields in order, and [`Event`]'s first field is its envelope.
pub fn decode_envelope(bytes: &[u8], location: impl FnOnce() -> String) -> Result<Envelope> {
    match bytes.split_first() {
        Some((&EVENT_V1, body)) => postcard::take_from_bytes(body)
            .map(|(envelope, _)| envelope)
            .map_err(|e| Error::Corrupt {
                location: location(),
                reason: e.to_string(),
            }),
        _ => decode_event(bytes, location).map(|e| e.envelope),
    }
}

/// The content hash used to tell a re-send (same bytes) from a conflict (same id, other bytes).
pub fn content_hash(encoded_event: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(encoded_event)
}

/// What the dedupe index holds per event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeEntry {
    pub seq: Seq,
    pub hash: u128,
}

impl DedupeEntry {
    pub fn encode(&self) -> [u8; 25] {
        let mut out = [0u8; 25];
        out[0] = DEDUPE_V1;
        out[1..9].copy_from_slice(&self.seq.to_be_bytes());
        out[9..].copy_from_slice(&self.hash.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<DedupeEntry> {
        match bytes {
            [DEDUPE_V1, rest @ ..] if rest.len() == 24 => Ok(DedupeEntry {
                seq: u64::from_be_bytes(rest[..8].try_into().unwrap_or_default()),
                hash: u128::from_be_bytes(rest[8..].try_into().unwrap_or_default()),
            }),
            _ => Err(Error::Corrupt {
                location: "dedupe index".into(),
                reason: format!("unexpected dedupe value of {} bytes", bytes.len()),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
