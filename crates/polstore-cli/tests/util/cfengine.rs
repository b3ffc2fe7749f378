//! Running CFEngine's own programs in a test: each with its own work directory
//! (CFENGINE_TEST_OVERRIDE_WORKDIR), bounded in time, its output kept in a log file; and a
//! cf-serverd waited for until it listens.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a CFEngine command ended: its exit code and its standard output and error.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub output: String,
}

/// A port nothing listens on at the moment.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs a CFEngine `program` with `workdir` as its CFENGINE_TEST_OVERRIDE_WORKDIR and its
/// current directory, failing the test when it runs longer than `time_max`; its output
/// goes to `log_path`, and is returned.
pub fn run_in_workdir(
    workdir: &Path,
    program: &str,
    args: &[&str],
    log_path: &Path,
    time_max: Duration,
) -> Ran {
    let log = File::create(log_path).unwrap();
    let mut child = Command::new(program)
        .args(args)
        .env("CFENGINE_TEST_OVERRIDE_WORKDIR", workdir)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    let deadline = Instant::now() + time_max;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {args:?} ran longer than {time_max:?}: {}",
                fs::read_to_string(log_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code: status.code(),
        output: fs::read_to_string(log_path).unwrap(),
    }
}

/// Waits until `server` (a cf-serverd logging to `log_path`) accepts connections on
/// `port` of 127.0.0.1; fails the test if it exits first or takes longer than `within`.
pub fn wait_for_listener(server: &mut Child, port: u16, log_path: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = || fs::read_to_string(log_path).unwrap_or_default();
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "cf-serverd exited with {status} before listening: {}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "cf-serverd did not listen on port {port} in {within:?}: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
