//! Gzip input as `gzip -d` reads it: members one after the other (files
//! joined with `cat`), and zero bytes after the last member ignored — the
//! padding a tar or a tape leaves, which `gzip -t` and `zcat` accept and
//! which stopped a whole history after its last line ("invalid gzip
//! header"). Zero bytes followed by anything else are not padding: an error.

use std::io::{self, BufRead, Read};

use flate2::bufread::GzDecoder;

/// Reads the gzip members of `R` one after the other.
pub(crate) struct GzMembers<R: BufRead> {
    /// The member being read, or the one that just ended (`None`: the
    /// input is over).
    member: Option<GzDecoder<R>>,
    /// The member ended: what follows is being looked at (kept across an
    /// error such as an interrupted read, so a retry goes on from there).
    ended: bool,
    /// Zero bytes seen since the member ended.
    zeros: usize,
}

impl<R: BufRead> GzMembers<R> {
    /// The members of `inner`, which starts with one.
    pub(crate) fn new(inner: R) -> Self {
        GzMembers {
            member: Some(GzDecoder::new(inner)),
            ended: false,
            zeros: 0,
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            if !self.ended {
                let n = member.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.ended = true;
                self.zeros = 0;
            }
            // The member ended: another one, padding, or the end.
            let inner = member.get_mut();
            loop {
                let avail = inner.fill_buf()?;
                if avail.is_empty() {
                    self.member = None;
                    return Ok(0);
                }
                let z = avail.iter().take_while(|&&b| b == 0).count();
                if z == avail.len() {
                    inner.consume(z);
                    self.zeros += z;
                    continue;
                }
                if self.zeros + z > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "data after zero padding past the last gzip member",
                    ));
                }
                break;
            }
            let Some(inner) = self.member.take().map(GzDecoder::into_inner) else {
                return Ok(0);
            };
            self.member = Some(GzDecoder::new(inner));
            self.ended = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn read(bytes: &[u8]) -> io::Result<String> {
        let mut s = String::new();
        GzMembers::new(io::BufReader::with_capacity(7, bytes)).read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn members_padding_and_what_is_not_padding() {
        let one = gz("a\nb\n");
        assert_eq!(read(&one).unwrap(), "a\nb\n");
        let mut two = one.clone();
        two.extend(gz("c\n"));
        assert_eq!(read(&two).unwrap(), "a\nb\nc\n");
        // Padding after the last member (a tar's, a tape's): ignored.
        let mut padded = two.clone();
        padded.extend(vec![0u8; 512]);
        assert_eq!(read(&padded).unwrap(), "a\nb\nc\n");
        // Zeros and then something else: not padding.
        let mut junk = padded.clone();
        junk.push(b'x');
        assert!(read(&junk).is_err());
        // Garbage right after a member: not a member.
        let mut garbage = one.clone();
        garbage.extend(b"not gzip");
        assert!(read(&garbage).is_err());
        // Cut short: an error, not a silent end.
        assert!(read(&one[..one.len() - 6]).is_err());
    }
}
