//! What a delivery attempt learns from its answer, or from its error: the
//! refusing receiver's body (bounded), the error chain as one line, and
//! whether the connection was lost before an answer.

/// Bytes of a refusing receiver's answer read for the failure detail (which
/// keeps 200 characters of it); the rest is not read, so a receiver cannot
/// make the worker buffer an unbounded body.
pub(crate) const RESPONSE_BODY_LIMIT: usize = 4096;

/// Reads at most `limit` bytes of the response body (lossy UTF-8); true when
/// the body was longer and the rest was dropped unread.
pub(super) async fn read_limited(mut resp: reqwest::Response, limit: usize) -> (String, bool) {
    let mut buf: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(buf.len());
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    (String::from_utf8_lossy(&buf).into_owned(), truncated)
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    if let Some(hint) = tls_hint(&s) {
        s.push_str(" (");
        s.push_str(hint);
        s.push(')');
    }
    s
}

/// What a refused receiver certificate means and what to do, for the
/// certificate errors of the TLS stack (rustls), whose own words name an
/// enum variant only.
pub(super) fn tls_hint(chain: &str) -> Option<&'static str> {
    // (what the TLS stack's message holds — its enum names or its own
    // sentences —, what it means and what to do)
    const HINTS: [(&[&str], &str); 5] = [
        (
            &["CaUsedAsEndEntity"],
            "the receiver serves a CA certificate (basicConstraints CA:TRUE) as its own, which \
             crisiswatch's TLS refuses even when ca_file pins it: serve a certificate that CA \
             issued, or a self-signed one made with -addext basicConstraints=critical,CA:FALSE",
        ),
        (
            &["UnknownIssuer"],
            "the receiver's certificate is not signed by a trusted CA (self-signed or a private \
             CA?): set the receiver's ca_file to the CA certificate that issued it",
        ),
        (
            &["certificate not valid for name", "NotValidForName"],
            "the receiver's certificate does not name the host of its url: use a name it was \
             issued for",
        ),
        (
            &["certificate expired", "(Expired)", ": Expired"],
            "the receiver's certificate has expired (or this machine's clock is wrong)",
        ),
        (
            &["certificate not valid yet", "NotValidYet"],
            "the receiver's certificate is not valid yet (or this machine's clock is wrong)",
        ),
    ];
    if !chain.contains("certificate") {
        return None;
    }
    HINTS
        .iter()
        .find(|(marks, _)| marks.iter().any(|m| chain.contains(m)))
        .map(|(_, h)| *h)
}

/// Whether a request failed because the connection was closed or reset
/// before an answer came (a receiver that crashed or a proxy that dropped
/// it): a connection error, not "other".
pub(super) fn connection_lost(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::tls_hint;

    #[test]
    fn refused_certificates_say_what_to_do() {
        let ca = "error sending request: client error (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))";
        assert!(tls_hint(ca).is_some_and(|h| h.contains("CA:FALSE")));
        let unknown = "invalid peer certificate: UnknownIssuer";
        assert!(tls_hint(unknown).is_some_and(|h| h.contains("ca_file")));
        // The TLS stack's own sentences (rustls 0.23's Display).
        let name = "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"other.example\")";
        assert!(tls_hint(name).is_some_and(|h| h.contains("does not name the host")));
        let expired = "invalid peer certificate: certificate expired: verification time 1796000000 (UNIX), but certificate is not valid after 1795000000 (1000000 seconds ago)";
        assert!(tls_hint(expired).is_some_and(|h| h.contains("has expired")));
        let early = "invalid peer certificate: certificate not valid yet: verification time 1 (UNIX), but certificate is not valid before 2 (1 seconds in future)";
        assert!(tls_hint(early).is_some_and(|h| h.contains("not valid yet")));
        let crl = "invalid peer certificate: certificate revocation list expired: verification time 2 (UNIX)";
        assert_eq!(tls_hint(crl), None);
        assert_eq!(tls_hint("connection refused"), None);
    }
}
