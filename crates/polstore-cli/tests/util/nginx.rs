//! A real nginx from Debian, started as a child process for one test and killed when
//! dropped: one process, no workers, so that nothing is left behind and each request is
//! logged before the next is served.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s;

/// How long nginx may take to accept connections.
pub const START_MAX: Duration = Duration::from_secs(20);

pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx in `dir` (its logs in `dir/logs`, temporary files in `dir/temp`) on a
    /// free port of 127.0.0.1, with `http(port)` inside its `http` block (the `server`
    /// blocks, logging), and waits until it accepts connections.
    pub fn start(dir: &Path, http: impl FnOnce(u16) -> String) -> Nginx {
        for sub in ["logs", "temp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let temp = dir.join("temp");
        let error_log = dir.join("logs/error.log");
        let config = format!(
            r#"daemon off;
master_process off;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  default_type application/octet-stream;
  {http}
}}
"#,
            pid = s(&dir.join("nginx.pid")),
            error_log = s(&error_log),
            temp = s(&temp),
            http = http(port),
        );
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config).unwrap();
        let output = File::create(dir.join("nginx.out")).unwrap();
        let child = Command::new("nginx")
            .args(["-e", s(&error_log), "-c", s(&config_path), "-p", s(dir)])
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("cannot start nginx");
        let mut nginx = Nginx { child, port };
        let deadline = Instant::now() + START_MAX;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}): {}{}",
                    fs::read_to_string(dir.join("nginx.out")).unwrap_or_default(),
                    fs::read_to_string(&error_log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not accept connections on port {port} within {START_MAX:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}
