//! The listening socket: bound from the configured address, or inherited from the supervisor
//! (systemd socket activation: `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, first fd 3), so
//! the socket outlives the process and a restart drops no connection.
//!
//! While no process accepts on an inherited socket (between the old host closing its copy
//! and the new one serving), the kernel completes connections and queues them in the
//! socket's backlog; the new host answers them.

use std::{
    net::{SocketAddr, TcpListener},
    os::fd::{FromRawFd, RawFd},
    time::Duration,
};

use actix_web::dev::ServerHandle;
use anyhow::{bail, Context};

/// The first file descriptor a supervisor hands over (`SD_LISTEN_FDS_START`).
pub const FIRST_INHERITED_FD: RawFd = 3;

/// The environment variables of the socket activation protocol.
const HANDOVER_VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// A listening TCP socket the supervisor handed over, checked and ready to serve on.
#[derive(Debug)]
pub struct InheritedListener {
    listener: TcpListener,
    /// The name the supervisor gave the socket (`LISTEN_FDNAMES`, e.g. `FileDescriptorName=`
    /// or the socket unit's name), when it gave one.
    name: Option<String>,
}

/// What the handover variables say, before any file descriptor is looked at.
#[derive(Debug, PartialEq, Eq)]
enum Handover {
    /// No socket activation (`LISTEN_PID` and `LISTEN_FDS` unset).
    None,
    /// The variables are meant for another process (a wrapper that forked instead of
    /// `exec`ing, or variables left over in the environment): ignored.
    NotForUs { reason: String },
    /// One socket for us, at [`FIRST_INHERITED_FD`].
    One { name: Option<String> },
}

/// Reads the socket activation variables, removes them from the environment (so no child
/// process ever inherits them) and, when they hand this process a socket, checks it: it
/// must be exactly one listening TCP socket at fd 3. Call first thing, before the runtime
/// opens any file descriptor (which could otherwise take the number 3 when the supervisor
/// passed nothing) or starts a thread (the environment is changed).
///
/// A handover that is meant for us but wrong (several sockets, fd 3 closed, not a socket,
/// not TCP, not listening) is an error naming what was expected and what was found.
pub fn take_inherited() -> anyhow::Result<Option<InheritedListener>> {
    let variable = |name: &str| std::env::var(name).ok();
    let handover = read_handover(
        variable("LISTEN_PID").as_deref(),
        variable("LISTEN_FDS").as_deref(),
        variable("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    for name in HANDOVER_VARIABLES {
        std::env::remove_var(name);
    }
    match handover? {
        Handover::None => Ok(None),
        Handover::NotForUs { reason } => {
            tracing::warn!("Socket activation variables ignored: {reason}");
            Ok(None)
        }
        Handover::One { name } => {
            let listener = listening_tcp_socket(FIRST_INHERITED_FD).map_err(|found| {
                anyhow::anyhow!(
                    "socket activation (LISTEN_FDS=1): expected fd {FIRST_INHERITED_FD} to be a \
                     listening TCP socket, found {found}"
                )
            })?;
            Ok(Some(InheritedListener { listener, name }))
        }
    }
}

/// The socket to serve on: the inherited one when there is one (the configured `bind` is
/// then not used), else `bind` bound now. Logs which, and where.
pub fn serving_listener(
    inherited: Option<InheritedListener>,
    bind: SocketAddr,
) -> anyhow::Result<(TcpListener, ListenerOrigin)> {
    let Some(InheritedListener { listener, name }) = inherited else {
        let listener = TcpListener::bind(bind).with_context(|| format!("cannot bind {bind}"))?;
        return Ok((listener, ListenerOrigin::Bound));
    };
    let address = listener
        .local_addr()
        .context("the inherited socket's address")?;
    let name = name.as_deref().unwrap_or("unnamed");
    tracing::info!(
        %address,
        socket = name,
        "Using the socket inherited from the supervisor ({address}, {name:?}, fd \
         {FIRST_INHERITED_FD}); the configured bind {bind} is not used"
    );
    Ok((listener, ListenerOrigin::Inherited))
}

/// How long the accept thread and the workers get, after accepting is paused, to hand over
/// the connections already accepted (see [`pause_and_hand_off`]).
pub const HANDOFF: Duration = Duration::from_millis(200);

/// Where the socket being served came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerOrigin {
    /// Bound by this process (`bind`): it closes with the process.
    Bound,
    /// Handed over by the supervisor: it outlives the process.
    Inherited,
}

/// Call just before the graceful stop (`handle.stop(true)`): on an inherited socket, stops
/// accepting and lets the workers take the connections already accepted.
///
/// actix's graceful stop tells its accept thread and its workers to stop at the same time,
/// and a worker that is stopping closes, unanswered, every connection still queued for it:
/// those the accept thread took from the socket just before (or while) it stopped (a
/// restart under load lost three or four requests that way). On an inherited socket, which
/// outlives the process, accepting is therefore paused first (new connections then wait in
/// the socket's backlog for the next process) and the workers are given [`HANDOFF`] to take
/// what was already accepted; the graceful stop after it then finishes them all.
///
/// A socket this process bound is left to the stop at once: it closes with the process,
/// and every connection waiting in its backlog when it closes is reset, so keeping it open
/// longer would only reset more (a load balancer retries a refused connection elsewhere).
pub async fn pause_and_hand_off(handle: &ServerHandle, origin: ListenerOrigin) {
    if origin == ListenerOrigin::Inherited {
        handle.pause().await;
        actix_web::rt::time::sleep(HANDOFF).await;
    }
}

/// The socket activation protocol: the variables count only when `LISTEN_PID` is this
/// process; then `LISTEN_FDS` must be 1 (this server serves one socket).
fn read_handover(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    own_pid: u32,
) -> anyhow::Result<Handover> {
    let pid = match (listen_pid, listen_fds) {
        (None, None) => return Ok(Handover::None),
        (None, Some(fds)) => {
            return Ok(Handover::NotForUs {
                reason: format!(
                    "LISTEN_FDS={fds} without LISTEN_PID (the supervisor names the process the \
                     sockets are for); binding the configured address"
                ),
            })
        }
        (Some(pid), _) => pid,
    };
    let Ok(pid) = pid.trim().parse::<u32>() else {
        bail!("socket activation: LISTEN_PID is {pid:?}, expected a process id");
    };
    if pid != own_pid {
        return Ok(Handover::NotForUs {
            reason: format!(
                "LISTEN_PID={pid} is not this process ({own_pid}): the sockets are for another \
                 process (a wrapper must `exec` pixsim7); binding the configured address"
            ),
        });
    }
    let Some(fds) = listen_fds else {
        bail!(
            "socket activation: LISTEN_PID={pid} is this process but LISTEN_FDS is not set; \
             expected LISTEN_FDS=1"
        );
    };
    match fds.trim().parse::<u32>() {
        Ok(1) => {}
        Ok(0) => bail!(
            "socket activation: LISTEN_FDS=0, expected LISTEN_FDS=1 (one listening TCP socket \
             at fd {FIRST_INHERITED_FD})"
        ),
        Ok(count) => bail!(
            "socket activation: LISTEN_FDS={count} (fds {FIRST_INHERITED_FD}..={}), expected \
             LISTEN_FDS=1: pixsim7 serves exactly one socket (one ListenStream= in the socket \
             unit)",
            FIRST_INHERITED_FD as u32 + count - 1
        ),
        Err(_) => bail!("socket activation: LISTEN_FDS is {fds:?}, expected LISTEN_FDS=1"),
    }
    let name = listen_fdnames
        .and_then(|names| names.split(':').next())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    Ok(Handover::One { name })
}

/// Takes `fd` as a listening TCP socket (IPv4 or IPv6), with close-on-exec set; otherwise
/// says what `fd` is instead (and leaves it alone).
fn listening_tcp_socket(fd: RawFd) -> Result<TcpListener, String> {
    // SAFETY: fstat(2) on a descriptor number writes only into the buffer we pass; a closed
    // descriptor is reported as EBADF.
    let mut status: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut status) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(if error.raw_os_error() == Some(libc::EBADF) {
            "no open file descriptor".to_owned()
        } else {
            format!("a descriptor fstat(2) fails on ({error})")
        });
    }
    if status.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!("{}, not a socket", file_kind(fd, status.st_mode)));
    }
    let family = socket_family(fd)?;
    let socket_type = socket_option(fd, libc::SO_TYPE)?;
    match family {
        libc::AF_INET | libc::AF_INET6 => {}
        libc::AF_UNIX => {
            return Err(
                "a Unix domain socket: pixsim7 serves TCP only (use ListenStream=ADDRESS:PORT, \
                 and let nginx proxy to it)"
                    .to_owned(),
            )
        }
        other => {
            return Err(format!(
                "a socket of address family {other}, not IPv4 or IPv6"
            ))
        }
    }
    if socket_type != libc::SOCK_STREAM {
        let kind = if socket_type == libc::SOCK_DGRAM {
            "a datagram (UDP) socket".to_owned()
        } else {
            format!("a socket of type {socket_type}")
        };
        return Err(format!("{kind}, not a stream (TCP) socket"));
    }
    if socket_option(fd, libc::SO_ACCEPTCONN)? == 0 {
        return Err("a TCP socket that is not listening (listen(2) was not called)".to_owned());
    }
    // SAFETY: fcntl(2) on a descriptor we just inspected; only its close-on-exec flag
    // changes, so children started later never inherit the socket.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } != 0 {
        return Err(format!(
            "a socket whose close-on-exec flag cannot be set ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the supervisor handed this descriptor to this process and nothing else in it
    // owns it; from here on the listener does (and closes it when dropped).
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// The address family a socket is bound in.
fn socket_family(fd: RawFd) -> Result<libc::c_int, String> {
    // SAFETY: getsockname(2) writes at most `length` bytes into the storage we own.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let result = unsafe {
        libc::getsockname(
            fd,
            (&mut address as *mut libc::sockaddr_storage).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return Err(format!(
            "a socket whose address cannot be read ({})",
            std::io::Error::last_os_error()
        ));
    }
    Ok(libc::c_int::from(address.ss_family))
}

/// An integer `SOL_SOCKET` option of a socket.
fn socket_option(fd: RawFd, option: libc::c_int) -> Result<libc::c_int, String> {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `length` bytes into `value`, which we own.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return Err(format!(
            "a socket whose options cannot be read ({})",
            std::io::Error::last_os_error()
        ));
    }
    Ok(value)
}

/// What kind of file `fd` is, from its mode, for the error line.
fn file_kind(fd: RawFd, mode: libc::mode_t) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a pipe",
        libc::S_IFLNK => "a symbolic link",
        _ => "a file of another kind",
    };
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(target) => format!("{kind} ({})", target.display()),
        Err(_) => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};

    use super::*;

    #[test]
    fn no_variables_is_no_handover() {
        assert_eq!(read_handover(None, None, None, 7).unwrap(), Handover::None);
    }

    #[test]
    fn one_socket_for_this_process_is_taken_with_its_name() {
        assert_eq!(
            read_handover(Some("7"), Some("1"), Some("http"), 7).unwrap(),
            Handover::One {
                name: Some("http".into())
            }
        );
        assert_eq!(
            read_handover(Some("7"), Some("1"), None, 7).unwrap(),
            Handover::One { name: None }
        );
    }

    #[test]
    fn another_process_s_sockets_are_ignored() {
        let Handover::NotForUs { reason } = read_handover(Some("8"), Some("1"), None, 7).unwrap()
        else {
            panic!("not ignored")
        };
        assert!(
            reason.contains("LISTEN_PID=8 is not this process (7)"),
            "{reason}"
        );
        assert!(matches!(
            read_handover(None, Some("1"), None, 7).unwrap(),
            Handover::NotForUs { .. }
        ));
    }

    #[test]
    fn a_wrong_count_or_a_garbled_variable_is_an_error() {
        let error = |pid, fds| read_handover(pid, fds, None, 7).unwrap_err().to_string();
        assert!(
            error(Some("7"), Some("2")).contains("LISTEN_FDS=2 (fds 3..=4), expected LISTEN_FDS=1"),
            "{}",
            error(Some("7"), Some("2"))
        );
        assert!(error(Some("7"), Some("0")).contains("LISTEN_FDS=0"));
        assert!(error(Some("7"), Some("one")).contains("LISTEN_FDS is \"one\""));
        assert!(error(Some("7"), None).contains("LISTEN_FDS is not set"));
        assert!(error(Some("pid"), Some("1")).contains("LISTEN_PID is \"pid\""));
    }

    #[test]
    fn a_listening_tcp_socket_is_taken_with_close_on_exec() {
        let bound = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = bound.local_addr().unwrap();
        let fd = bound.into_raw_fd();
        // SAFETY: clearing the flag on a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let taken = listening_tcp_socket(fd).unwrap();
        assert_eq!(taken.local_addr().unwrap(), address);
        // SAFETY: reading the flags of a descriptor the listener owns.
        let flags = unsafe { libc::fcntl(taken.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn anything_else_is_named() {
        let file = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        let found = listening_tcp_socket(file.as_raw_fd()).unwrap_err();
        assert!(found.starts_with("a regular file ("), "{found}");
        assert!(found.ends_with("Cargo.toml), not a socket"), "{found}");

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let found = listening_tcp_socket(udp.as_raw_fd()).unwrap_err();
        assert!(found.starts_with("a datagram (UDP) socket"), "{found}");

        // SAFETY: a fresh TCP socket, never listened on, closed below.
        let tcp = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(tcp >= 0);
        let found = listening_tcp_socket(tcp).unwrap_err();
        assert!(found.contains("not listening"), "{found}");
        // SAFETY: closing the socket this test opened.
        unsafe { libc::close(tcp) };

        let dir = std::env::temp_dir().join(format!("pixsim7-listener-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        let found = listening_tcp_socket(unix.as_raw_fd()).unwrap_err();
        assert!(found.starts_with("a Unix domain socket"), "{found}");
        let _ = std::fs::remove_file(&dir);

        let found = listening_tcp_socket(1_000_000).unwrap_err();
        assert_eq!(found, "no open file descriptor");
    }
}
