//! The decoder's fast path: a direct scanner for the common shape of an event
//! line — one flat JSON object whose strings have no escapes.
//!
//! It fills the same [`RawEvent`] the serde visitor does, so validation (and
//! every error message) is shared. It never reports an error itself: on
//! anything it does not handle — an escape or control character in a string,
//! a nested object or array outside `attrs`, a non-string attribute value, an
//! unusual number, invalid UTF-8 or JSON — it returns `None` and the caller
//! runs the full serde path, which decides. So for every input the result is
//! the one the serde path alone would give; `tests/decode_fuzz.rs` checks
//! exactly that against [`super::decode_reference`].
//!
//! Why: on typical lines the serde path spends most of its time in generic
//! string scanning and in moving the large intermediate values through its
//! layers; the scanner validates UTF-8 once per line and borrows every string.

use std::borrow::Cow;

use super::{AttrList, RawEvent, Scalar};

/// Integers with at most this many digits are converted directly; longer ones
/// go through serde_json's number parser.
const MAX_DIRECT_DIGITS: usize = 18;

/// Scans `bytes` as one event object, its attributes into `attrs` (cleared
/// first), with `bytes` as text (checked to be UTF-8 on the way), or `None`
/// to ask for the full parser.
#[inline(always)]
pub(super) fn parse<'a>(
    bytes: &'a [u8],
    attrs: &mut AttrList<'a>,
) -> Option<(RawEvent<'a>, &'a str)> {
    attrs.clear();
    let text = std::str::from_utf8(bytes).ok()?;
    let mut c = Cursor {
        b: bytes,
        s: text,
        i: 0,
    };
    c.eat(b'{')?;
    let mut raw = RawEvent::default();
    if c.peek()? == b'}' {
        c.i += 1;
    } else {
        loop {
            if c.peek()? != b'"' {
                return None;
            }
            let key = c.string()?;
            c.eat(b':')?;
            match key {
                "id" => raw.id = Some(c.scalar()?),
                "type" => raw.kind = Some(c.scalar()?),
                "ts" => raw.ts = Some(c.scalar()?),
                "customer_id" => raw.customer_id = Some(c.scalar()?),
                "ref_id" => raw.ref_id = Some(c.scalar()?),
                "score" => raw.score = Some(c.scalar()?),
                "sentiment" => raw.sentiment = Some(c.scalar()?),
                "attrs" => c.attrs(attrs)?,
                _ => {
                    c.scalar()?;
                }
            }
            match c.peek()? {
                b',' => c.i += 1,
                b'}' => {
                    c.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    c.skip_ws();
    (c.i == bytes.len()).then_some((raw, text))
}

struct Cursor<'a> {
    b: &'a [u8],
    /// The same bytes, known to be UTF-8.
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-blank byte, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string at the cursor (which is on its opening quote), if it has no
    /// escapes and no control characters.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i + 1;
        let mut j = start;
        // Eight bytes at a time up to the first quote, backslash or control byte.
        while let Some(chunk) = self.b.get(j..j + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let m = special_bytes(u64::from_le_bytes(w));
            if m != 0 {
                j += (m.trailing_zeros() / 8) as usize;
                break;
            }
            j += 8;
        }
        loop {
            let c = *self.b.get(j)?;
            if c == b'"' {
                break;
            }
            if c == b'\\' || c < 0x20 {
                return None;
            }
            j += 1;
        }
        self.i = j + 1;
        // Both ends sit next to an ASCII quote, so they are char boundaries.
        self.s.get(start..j)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Any value but an object or an array.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => Some(Scalar::Str(Cow::Borrowed(self.string()?))),
            b'n' => self.literal(b"null").map(|()| Scalar::Null),
            b't' => self.literal(b"true").map(|()| Scalar::Bool),
            b'f' => self.literal(b"false").map(|()| Scalar::Bool),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A number, classified as serde_json does: non-negative integers are
    /// `U64`, negative ones `I64`, anything with a fraction or an exponent `F64`.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.i;
        let mut j = start;
        while let Some(&c) = self.b.get(j) {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                j += 1;
            } else {
                break;
            }
        }
        let token = &self.b[start..j];
        self.i = j;
        let (negative, digits) = match token.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, token),
        };
        let simple_integer = !digits.is_empty()
            && digits.len() <= MAX_DIRECT_DIGITS
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || (digits.len() == 1 && !negative));
        if simple_integer {
            let v = digits
                .iter()
                .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
            return Some(if negative {
                Scalar::I64(-v)
            } else {
                Scalar::U64(v.unsigned_abs())
            });
        }
        if token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
            // serde_json's own float parser, so the value is bit-identical;
            // malformed or out-of-range numbers go to the full parser.
            return serde_json::from_slice::<f64>(token).ok().map(Scalar::F64);
        }
        None
    }

    /// The `attrs` value, stored in `list` (in place: the list is large;
    /// a repeated `attrs` replaces the earlier one): `null` (no attributes)
    /// or an object whose values are strings or `null`; `None` for anything
    /// else.
    fn attrs(&mut self, list: &mut AttrList<'a>) -> Option<()> {
        list.clear();
        match self.peek()? {
            b'n' => {
                self.literal(b"null")?;
                return Some(());
            }
            b'{' => self.i += 1,
            _ => return None,
        }
        let mut out = super::raw::AttrBuilder::new(list);
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.eat(b':')?;
            match self.peek()? {
                b'"' => {
                    let v = Cow::Borrowed(self.string()?);
                    // Beyond a limit: the full parser reports it.
                    out.insert(Cow::Borrowed(key), v).ok()?;
                }
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// A word with the high bit set in (at least) the lowest byte of `w` that is a
/// quote, a backslash or a control character (below 0x20); zero if none is.
/// Bits above the lowest match may be spurious (borrows), so only
/// `trailing_zeros` of the result is meaningful.
#[inline]
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_finds_the_first_quote_backslash_or_control() {
        for (i, c) in [(0usize, b'"'), (3, b'\\'), (7, 0x1f), (5, 0x00), (2, b'"')] {
            let mut w = *b"abcdefgh";
            w[i] = c;
            let m = special_bytes(u64::from_le_bytes(w));
            assert_eq!((m.trailing_zeros() / 8) as usize, i, "{c:#x} at {i}");
        }
        assert_eq!(special_bytes(u64::from_le_bytes(*b"plain az")), 0);
        // Bytes at and above 0x80 (UTF-8) and 0x20..0x7f other than the two are plain.
        assert_eq!(
            special_bytes(u64::from_le_bytes([
                0x80, 0xff, 0x20, 0x7f, b'!', b'#', 0xc3, 0xa9
            ])),
            0
        );
    }
}
