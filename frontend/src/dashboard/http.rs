//! [`Request`] and [`Response`]: the little HTTP/1.1 the dashboard speaks. One request per
//! connection (`Connection: close`), GET, HEAD and POST without a body, the request head read
//! up to [`MAX_HEAD`] bytes within [`READ_TIMEOUT`]: a slow or hostile client costs one task,
//! bounded in time and memory. It serves a few pages on a trusted network, not the internet.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One request, as far as the dashboard cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string's pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Parses a request head; `None` if it is not one.
    pub fn parse(head: &str) -> Option<Request> {
        let mut lines = head.split("\r\n").flat_map(|l| l.split('\n'));
        let mut words = lines.next()?.split_whitespace();
        let (method, target) = (words.next()?.to_owned(), words.next()?);
        words.next().filter(|v| v.starts_with("HTTP/"))?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let headers = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Request { method, path: percent_decode(path), query, headers })
    }

    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON body with status `status`.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response { status, content_type: "application/json", body }
    }

    /// A plain-text body with status `status`.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{text}\n").into_bytes(),
        }
    }

    /// Writes it to `stream` (the head only for HEAD) and closes the connection.
    pub async fn write(&self, stream: &mut TcpStream, head_only: bool) {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        if !head_only {
            let _ = stream.write_all(&self.body).await;
        }
        let _ = stream.shutdown().await;
    }
}

/// Reads a request head from `stream`; `None` if the client closed, sent too much or too
/// slowly, or sent something else.
pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let read = async {
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            if buf.len() > MAX_HEAD {
                return None;
            }
        }
    };
    let head = tokio::time::timeout(READ_TIMEOUT, read).await.ok()??;
    Request::parse(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_request_line_query_and_headers() {
        let r = Request::parse(
            "GET /api/job?id=job%2D1&x=a+b HTTP/1.1\r\nHost: h\r\nX-Jetwork-Action: 1\r\n\r\n",
        )
        .expect("a request");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/job");
        assert_eq!(r.param("id"), Some("job-1"));
        assert_eq!(r.param("x"), Some("a b"));
        assert_eq!(r.header("x-jetwork-action"), Some("1"));
        assert_eq!(Request::parse("nonsense\r\n\r\n"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
