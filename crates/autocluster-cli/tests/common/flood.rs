//! Hostile clients of an agent's peer listener (`node.listen`): connections that send
//! nothing, garbage connects at a fixed rate, handshakes with a made-up proof (a wrong
//! cookie) as fast as they go, and single handshakes with chosen names. A flood runs for a
//! bounded time in a thread of its own, with its own runtime, from loopback source addresses
//! that stand for other hosts (127.0.x.y).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// The handshake's frame types (see `autocluster::probe`).
pub const HELLO: u8 = 1;
pub const CHALLENGE: u8 = 2;
pub const PROOF: u8 = 3;
pub const REFUSED: u8 = 5;

/// How long a garbage or silent client waits for the listener to close its connection.
const HOLD: Duration = Duration::from_secs(5);

/// What a flood did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    /// Connections opened.
    pub connections: u64,
    /// Handshakes the listener answered with a REFUSED frame.
    pub refused: u64,
    /// How long it opened connections.
    pub elapsed: Duration,
}

impl Done {
    /// Connections a second.
    pub fn rate(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64()
    }
}

/// A flood running in its own thread.
pub struct Flood(JoinHandle<Done>);

impl Flood {
    /// Runs `f` (which opens connections for `duration`, then waits for the last ones) on
    /// a runtime of two threads.
    fn start<F: Future<Output = u64> + Send + 'static>(
        duration: Duration,
        refused: Arc<AtomicU64>,
        f: impl FnOnce() -> F + Send + 'static,
    ) -> Flood {
        Flood(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let connections = rt.block_on(f());
            Done {
                connections,
                refused: refused.load(Ordering::Relaxed),
                elapsed: duration,
            }
        }))
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits until it ends.
    pub fn join(self) -> Done {
        self.0.join().expect("the flood thread")
    }
}

/// `n` loopback addresses standing for as many hosts: 127.0.`net`.1, 127.0.`net`.2, ...
pub fn sources(net: u8, n: u8) -> Vec<Ipv4Addr> {
    (1..=n).map(|i| Ipv4Addr::new(127, 0, net, i)).collect()
}

/// A connection to `to` from the loopback address `from`.
pub async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(to).await
}

/// Reads and drops what the peer sends until it closes `s`, at most `within`.
async fn until_closed(s: &mut TcpStream, within: Duration) {
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(within, async {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Keeps `n` connections that send nothing open to `to` for `duration`, spread over
/// `sources`: each one the listener closes is opened again a second later.
pub fn silent(to: SocketAddr, n: usize, sources: Vec<Ipv4Addr>, duration: Duration) -> Flood {
    Flood::start(duration, Arc::default(), move || async move {
        let stop = Instant::now() + duration;
        let mut set = JoinSet::new();
        for i in 0..n {
            let from = sources[i % sources.len()];
            set.spawn(async move {
                let mut opened = 0;
                while Instant::now() < stop {
                    if let Ok(mut s) = connect_from(from, to).await {
                        opened += 1;
                        until_closed(&mut s, stop.saturating_duration_since(Instant::now())).await;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                opened
            });
        }
        set.join_all().await.into_iter().sum()
    })
}

/// `per_second` new connections a second to `to` for `duration`, spread over `sources`, each
/// as a port scanner's: reset at once, an HTTP request, random bytes, a truncated frame, or
/// nothing, then waiting up to 5 s for the listener to close it (at most 2,000 open at once).
pub fn garbage(
    to: SocketAddr,
    per_second: u32,
    sources: Vec<Ipv4Addr>,
    duration: Duration,
) -> Flood {
    Flood::start(duration, Arc::default(), move || async move {
        let stop = Instant::now() + duration;
        let open = Arc::new(Semaphore::new(2000));
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut set = JoinSet::new();
        let mut n: u64 = 0;
        while Instant::now() < stop {
            tick.tick().await;
            while set.try_join_next().is_some() {}
            for _ in 0..per_second / 100 {
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    break;
                };
                let from = sources[n as usize % sources.len()];
                let payload = scan_payload(n);
                n += 1;
                set.spawn(async move {
                    let _permit = permit;
                    let Ok(mut s) = connect_from(from, to).await else {
                        return;
                    };
                    match payload {
                        None => {
                            let _ = s.set_zero_linger();
                        }
                        Some(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            until_closed(&mut s, HOLD).await;
                        }
                    }
                });
            }
        }
        set.join_all().await;
        n
    })
}

/// What the `n`th garbage connection sends: `None` to reset it at once.
fn scan_payload(n: u64) -> Option<Vec<u8>> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    match n % 5 {
        0 => None,
        1 => Some(b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        2 => Some(
            (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        ),
        // A HELLO header promising 1,000 bytes, and ten of them.
        3 => Some([&[HELLO, 0x03, 0xe8][..], b"ACPB\x01\x00\x06emq"].concat()),
        _ => Some(Vec::new()),
    }
}

/// Handshakes with a made-up proof (as a prober with the wrong cookie) to `to`, from
/// `workers` clients spread over `sources`, as fast as they go for `duration`.
pub fn bad_cookie(
    to: SocketAddr,
    workers: usize,
    sources: Vec<Ipv4Addr>,
    hello: HelloNames,
    duration: Duration,
) -> Flood {
    let refused = Arc::new(AtomicU64::new(0));
    let counter = refused.clone();
    Flood::start(duration, refused, move || async move {
        let stop = Instant::now() + duration;
        let mut set = JoinSet::new();
        for i in 0..workers {
            let from = sources[i % sources.len()];
            let (hello, refused) = (hello.clone(), counter.clone());
            set.spawn(async move {
                let mut opened = 0;
                while Instant::now() < stop {
                    opened += 1;
                    if handshake(from, to, &hello).await.last() == Some(&REFUSED) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                opened
            });
        }
        set.join_all().await.into_iter().sum()
    })
}

/// The names a HELLO carries.
#[derive(Debug, Clone)]
pub struct HelloNames {
    pub cluster: String,
    pub prober: String,
    pub target: String,
}

/// One handshake from `from` to `to` with `names` and a made-up proof: the types of the
/// frames the listener sent (a CHALLENGE, then a REFUSED; or a REFUSED at once).
pub async fn handshake(from: Ipv4Addr, to: SocketAddr, names: &HelloNames) -> Vec<u8> {
    let mut got = Vec::new();
    let Ok(mut s) = connect_from(from, to).await else {
        return got;
    };
    let mut hello = b"ACPB\x01".to_vec();
    for field in [&names.cluster, &names.prober, &names.target] {
        hello.extend_from_slice(&(field.len() as u16).to_be_bytes());
        hello.extend_from_slice(field.as_bytes());
    }
    hello.extend_from_slice(&[7; 32]);
    if write_frame(&mut s, HELLO, &hello).await.is_err() {
        return got;
    }
    while let Some(ty) = read_frame(&mut s).await {
        got.push(ty);
        if ty != CHALLENGE || write_frame(&mut s, PROOF, &[0x5a; 32]).await.is_err() {
            break;
        }
    }
    got
}

async fn write_frame(s: &mut TcpStream, ty: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = vec![ty];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    s.write_all(&frame).await
}

/// The type of the next frame (its payload read and dropped), `None` when the connection
/// ends or nothing comes within 5 s.
async fn read_frame(s: &mut TcpStream) -> Option<u8> {
    let read = async {
        let mut head = [0u8; 3];
        s.read_exact(&mut head).await.ok()?;
        let mut payload = vec![0u8; u16::from_be_bytes([head[1], head[2]]) as usize];
        s.read_exact(&mut payload).await.ok()?;
        Some(head[0])
    };
    tokio::time::timeout(HOLD, read).await.ok().flatten()
}
