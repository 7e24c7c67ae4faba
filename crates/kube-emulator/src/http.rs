//! The HTTP/1.1 side: one thread per connection, several requests per connection
//! (keep-alive, as kubectl and kube-rs reuse connections), plain or TLS.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::Emulator;

/// An idle kept-alive connection is closed after this long: its thread is released.
const IDLE: Duration = Duration::from_secs(120);
/// Largest request body accepted (the real API server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Connection threads do little but JSON work: a small stack lets thousands of watches run.
const STACK: usize = 512 * 1024;

/// One request as read off the wire.
pub(crate) struct Request {
    /// `GET /api/v1/pods?limit=500 HTTP/1.1`: what the request log keeps.
    pub line: String,
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
}

/// Serves `listener` from a background thread, each connection on a thread of its own;
/// with `tls`, connections are TLS.
pub(crate) fn serve(emu: Emulator, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let spawned = std::thread::Builder::new()
        .name("kube-sim-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let emu = emu.clone();
                let tls = tls.clone();
                let _ = std::thread::Builder::new()
                    .name("kube-sim-conn".into())
                    .stack_size(STACK)
                    .spawn(move || connection(&emu, stream, tls));
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the accept thread of the emulated API server");
    }
}

fn connection(emu: &Emulator, stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let gone = Gone(stream.try_clone().ok());
    match tls {
        None => requests(emu, stream, &gone),
        Some(cfg) => match rustls::ServerConnection::new(cfg) {
            Ok(conn) => requests(emu, rustls::StreamOwned::new(conn, stream), &gone),
            Err(e) => tracing::warn!(error = %e, "TLS session setup failed"),
        },
    }
}

/// Tells whether the client of a streaming response went away, without writing to it: a
/// watch that sends nothing for a long time (no bookmarks asked for) must still release
/// its thread when the client closes.
pub(crate) struct Gone(Option<TcpStream>);

impl Gone {
    /// True when the client closed the connection or sent anything (a client never writes
    /// to a watch it still reads: a TLS close_notify is the only thing that comes).
    pub fn check(&self) -> bool {
        let Some(s) = &self.0 else { return false };
        // The read timeout is the socket's, shared with the serving stream; that stream
        // does not read again once a watch started (the connection ends with it).
        if s.set_read_timeout(Some(Duration::from_millis(1))).is_err() {
            return false;
        }
        match s.peek(&mut [0u8; 1]) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

fn requests<S: Read + Write>(emu: &Emulator, stream: S, gone: &Gone) {
    let mut r = BufReader::new(stream);
    loop {
        let req = match read_request(&mut r) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let body = crate::status(400, "BadRequest", &e.to_string())
                        .1
                        .to_string();
                    let _ = respond(r.get_mut(), 400, "application/json", body.as_bytes(), false);
                }
                return;
            }
        };
        match emu.dispatch(req, r.get_mut(), gone) {
            Ok(true) => continue,
            _ => return,
        }
    }
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim().to_string();
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.0");
    let mut keep_alive = version == "HTTP/1.1";
    let (mut len, mut chunked) = (0usize, false);
    let (mut content_type, mut accept, mut authorization) = (String::new(), String::new(), None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                len = value
                    .parse()
                    .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => content_type = value.to_ascii_lowercase(),
            "accept" => accept = value.to_string(),
            "authorization" => authorization = Some(value.to_string()),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(r)?
    } else {
        if len > MAX_BODY {
            return Err(invalid(format!("request body of {len} bytes is too large")));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect();
    Ok(Some(Request {
        path: unescape(path),
        line,
        method,
        target: target.clone(),
        params,
        content_type,
        accept,
        authorization,
        body,
        keep_alive,
    }))
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let size = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
        if body.len() + n > MAX_BODY {
            return Err(invalid("request body is too large".into()));
        }
        if n == 0 {
            // Trailers, then the empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t == "\r\n" || t == "\n" {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + n + 2, 0);
        r.read_exact(&mut body[start..])?;
        body.truncate(start + n);
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// A whole response with a length.
pub(crate) fn respond<W: Write>(
    w: &mut W,
    code: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        w,
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache, private\r\nConnection: {connection}\r\n\r\n",
        reason(code),
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

/// The head of a streamed (chunked) response; the connection closes after it.
pub(crate) fn stream_head<W: Write>(w: &mut W) -> io::Result<()> {
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\nConnection: close\r\n\r\n"
    )?;
    w.flush()
}

pub(crate) fn end_stream<W: Write>(w: &mut W) -> io::Result<()> {
    write!(w, "0\r\n\r\n")?;
    w.flush()
}

/// Percent-decoding of a query value (`%3D` → `=`, `+` → space).
pub(crate) fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(c) => {
                        out.push(c);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_lengths_chunks_and_escapes() {
        let wire = "PATCH /api/v1/nodes/a?fieldManager=kubectl%2Dpatch&x HTTP/1.1\r\nContent-Type: application/merge-patch+json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\nGET /api HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut r = BufReader::new(wire.as_bytes());
        let one = read_request(&mut r).unwrap().unwrap();
        assert_eq!(one.method, "PATCH");
        assert_eq!(one.path, "/api/v1/nodes/a");
        assert_eq!(one.params["fieldManager"], "kubectl-patch");
        assert_eq!(one.params["x"], "");
        assert_eq!(one.body, b"{\"a\":1}");
        assert!(one.keep_alive);
        let two = read_request(&mut r).unwrap().unwrap();
        assert_eq!((two.path.as_str(), two.keep_alive), ("/api", false));
        assert!(read_request(&mut r).unwrap().is_none());
        assert_eq!(unescape("a%3Db%2Cc"), "a=b,c");
        assert_eq!(unescape("50%"), "50%");
    }
}
