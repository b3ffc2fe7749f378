//! An HTTP/1.1 server of the tests' own on 127.0.0.1 that serves a repository's files
//! (`polstore publish --repo`) honestly, except for the paths a test gives another
//! `Answer`: wrong, truncated, endless or slow bodies, statuses, redirects. Real servers
//! (nginx) serve the honest cases in `repo.rs`; this one is the hostile mirror.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server answers for a path instead of the repository's file.
#[derive(Clone)]
pub enum Answer {
    /// 200 with these bytes.
    Body(Vec<u8>),
    /// This status with an empty body, and a `Location` when given.
    Status(u16, Option<String>),
    /// 200 announcing `announced` bytes, then only `body`, then the connection closed.
    Truncated { announced: u64, body: Vec<u8> },
    /// 200 and a body that never ends, framed so.
    Endless(Framing),
    /// Header lines that never end.
    EndlessHeaders,
    /// 200 and its headers (a `Content-Length` of 1000), then a byte a second.
    Trickle,
    /// 200 and its headers, then nothing.
    SilentBody,
    /// Nothing at all.
    Silent,
    /// The connection closed at once.
    Hangup,
}

#[derive(Clone, Copy, Debug)]
pub enum Framing {
    /// A `Content-Length` of 1 TiB.
    Length,
    /// `Transfer-Encoding: chunked`, chunks forever.
    Chunked,
    /// No length: the body ends when the connection closes, which it never does.
    Close,
}

/// One request the server answered, with the bytes it sent (headers included) so far.
struct Served {
    path: String,
    bytes: Arc<AtomicU64>,
}

struct Shared {
    repo: PathBuf,
    /// A path, or a prefix ending in `/`, and what to answer for it.
    answers: Mutex<Vec<(String, Answer)>>,
    log: Mutex<Vec<Served>>,
    stop: AtomicBool,
}

/// An HTTP/1.1 server on 127.0.0.1, a thread per connection, serving `repo`'s files with
/// keep-alive, except where told otherwise. Stopped when dropped.
pub struct Server {
    port: u16,
    shared: Arc<Shared>,
}

/// How long any one answer of the server lasts at most.
const ANSWER_MAX: Duration = Duration::from_secs(60);
/// The most an endless answer sends.
const ENDLESS_MAX: u64 = 1 << 30;

impl Server {
    pub fn start(repo: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            repo: repo.to_path_buf(),
            answers: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || shared.connection(stream));
            }
        });
        Server { port, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Answers `answer` for `path` (or every path under it, when it ends in `/`).
    pub fn answer(&self, path: &str, answer: Answer) {
        let mut answers = self.shared.answers.lock().unwrap();
        answers.retain(|(known, _)| known != path);
        answers.push((path.to_string(), answer));
    }

    /// Serves the repository as it is again.
    pub fn honest(&self) {
        self.shared.answers.lock().unwrap().clear();
    }

    /// The requests answered since the last call: path and bytes sent.
    pub fn take_log(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.shared.log.lock().unwrap())
            .into_iter()
            .map(|served| (served.path, served.bytes.load(Ordering::Relaxed)))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Shared {
    /// Answers requests on one connection until the client closes it or an answer ends it.
    fn connection(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(ANSWER_MAX));
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        loop {
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
            }
            let path = request
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let bytes = Arc::new(AtomicU64::new(0));
            self.log.lock().unwrap().push(Served {
                path: path.clone(),
                bytes: Arc::clone(&bytes),
            });
            let mut out = Counted {
                stream: &mut stream,
                bytes: &bytes,
            };
            let keep_alive = self.respond(&path, &mut out).unwrap_or(false);
            if !keep_alive {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }

    fn answer_for(&self, path: &str) -> Option<Answer> {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .rev()
            .find(|(known, _)| known == path || known.ends_with('/') && path.starts_with(known))
            .map(|(_, answer)| answer.clone())
    }

    /// Sends the answer for `path`; whether the connection may serve another request.
    fn respond(&self, path: &str, out: &mut Counted) -> std::io::Result<bool> {
        let answer = self.answer_for(path).unwrap_or_else(|| {
            let file = self.repo.join(path);
            match fs::read(&file) {
                Ok(bytes) if !path.split('/').any(|part| part == "..") => Answer::Body(bytes),
                _ => Answer::Status(404, None),
            }
        });
        let (started, sent) = (Instant::now(), out.bytes);
        let going = || {
            !self.stop.load(Ordering::Relaxed)
                && started.elapsed() < ANSWER_MAX
                && sent.load(Ordering::Relaxed) < ENDLESS_MAX
        };
        match answer {
            Answer::Body(body) => {
                out.send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ))?;
                out.send(body)?;
                Ok(true)
            }
            Answer::Status(code, location) => {
                let location = location.map_or(String::new(), |to| format!("Location: {to}\r\n"));
                out.send(format!(
                    "HTTP/1.1 {code} Hostile\r\n{location}Content-Length: 0\r\n\r\n"
                ))?;
                Ok(true)
            }
            Answer::Truncated { announced, body } => {
                out.send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n"
                ))?;
                out.send(body)?;
                Ok(false)
            }
            Answer::Endless(framing) => {
                out.send(match framing {
                    Framing::Length => {
                        "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n".to_string()
                    }
                    Framing::Chunked => {
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                    }
                    Framing::Close => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
                })?;
                let block = vec![b'x'; 64 << 10];
                while going() {
                    if let Framing::Chunked = framing {
                        out.send(format!("{:x}\r\n", block.len()))?;
                        out.send(&block)?;
                        out.send("\r\n")?;
                    } else {
                        out.send(&block)?;
                    }
                }
                Ok(false)
            }
            Answer::EndlessHeaders => {
                out.send("HTTP/1.1 200 OK\r\n")?;
                let mut count = 0u64;
                while going() {
                    out.send(format!("X-Hostile-{count}: {}\r\n", "y".repeat(1000)))?;
                    count += 1;
                }
                Ok(false)
            }
            Answer::Trickle => {
                out.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")?;
                while going() {
                    out.send("z")?;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Ok(false)
            }
            Answer::SilentBody => {
                out.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")?;
                out.wait_for_hangup();
                Ok(false)
            }
            Answer::Silent => {
                out.wait_for_hangup();
                Ok(false)
            }
            Answer::Hangup => Ok(false),
        }
    }
}

/// A stream that counts what was written to it.
struct Counted<'a> {
    stream: &'a mut TcpStream,
    bytes: &'a AtomicU64,
}

impl Counted<'_> {
    fn send(&mut self, data: impl AsRef<[u8]>) -> std::io::Result<()> {
        let data = data.as_ref();
        self.stream.write_all(data)?;
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until the client gives up and closes the connection (or [`ANSWER_MAX`]).
    fn wait_for_hangup(&mut self) {
        let _ = std::io::Read::read_to_end(&mut self.stream, &mut Vec::new());
    }
}
