//! The harness's own test hosts: one network namespace per node on a private bridge, each
//! node's data on its own loop-mounted ext4 file system (for power loss), and the firewall
//! rules that cut links. Everything here is created and removed by the harness; nothing leaves
//! the bridge's private subnet.
//!
//! Addresses on the bridge `10.213.0.0/24`:
//! - `10.213.0.1`: the harness (clients and proxy) in the root namespace, and the NameServer
//!   (`--protocol remoting`) on port 9876: no fault rule names this address;
//! - `10.213.0.(10+i)`: node `i`, inside namespace `rmqc-n<i>`;
//! - `10.213.0.(50+i)`: node `i` *as seen through the proxy* — the proxy listens there for
//!   links towards `i` and dials from there for links out of `i`, so a node's firewall can name
//!   the peer a packet comes from.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The bridge in the root namespace.
pub const BRIDGE: &str = "rmqc-br0";
/// The firewall chain each node namespace sends its INPUT through.
pub const CHAIN: &str = "RAFTMQ-CHAOS";
const PREFIX: u8 = 24;

/// The harness's address on the bridge.
pub fn harness_ip() -> Ipv4Addr {
    Ipv4Addr::new(10, 213, 0, 1)
}

/// Node `i`'s own address.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, 0, 10 + u8::try_from(i).unwrap_or(0))
}

/// Node `i` as seen through the proxy.
pub fn view_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, 0, 50 + u8::try_from(i).unwrap_or(0))
}

/// Node `i`'s namespace.
pub fn netns(i: usize) -> String {
    format!("rmqc-n{i}")
}

fn veth(i: usize) -> String {
    format!("rmqc-v{i}")
}

/// Runs a command; its stderr is the error when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command in node `i`'s namespace.
pub fn run_in(i: usize, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let ns = netns(i);
    let mut all = vec!["netns", "exec", ns.as_str(), program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Whether this process can create namespaces, bridges and firewall rules (root with `ip` and
/// `iptables`); the reason when not.
pub fn netns_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for tool in ["ip", "iptables"] {
        if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Whether loop-mounted file systems (power loss) can be used; the reason when not.
pub fn loop_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for tool in ["losetup", "mkfs.ext4", "mount"] {
        if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Waits for, then holds, the host-wide lock of chaos runs (released when the file drops).
///
/// # Errors
/// The lock file cannot be opened or locked.
pub fn lock_host() -> anyhow::Result<std::fs::File> {
    let path = std::env::temp_dir().join("raftmq-chaos.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(file)
}

/// Removes what an earlier run may have left: namespaces, the bridge.
pub fn cleanup_network(nodes: usize) {
    for i in 0..nodes.max(5) {
        let _ = run("ip", &["netns", "del", &netns(i)]);
        let _ = run("ip", &["link", "del", &veth(i)]);
    }
    let _ = run("ip", &["link", "del", BRIDGE]);
}

/// Creates the bridge and one namespace per node, each with its firewall chain.
///
/// # Errors
/// Any `ip`/`iptables` command that fails, with its stderr.
pub fn setup_network(nodes: usize) -> anyhow::Result<()> {
    cleanup_network(nodes);
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/{PREFIX}", harness_ip()),
            "dev",
            BRIDGE,
        ],
    )?;
    for i in 0..nodes {
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/{PREFIX}", view_ip(i)),
                "dev",
                BRIDGE,
            ],
        )?;
    }
    run("ip", &["link", "set", BRIDGE, "up"])?;
    for i in 0..nodes {
        let ns = netns(i);
        let v = veth(i);
        run("ip", &["netns", "add", &ns])?;
        run(
            "ip",
            &[
                "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &v, "master", BRIDGE])?;
        run("ip", &["link", "set", &v, "up"])?;
        run_in(
            i,
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/{PREFIX}", node_ip(i)),
                "dev",
                "eth0",
            ],
        )?;
        run_in(i, "ip", &["link", "set", "eth0", "up"])?;
        run_in(i, "ip", &["link", "set", "lo", "up"])?;
        run_in(i, "iptables", &["-w", "-N", CHAIN])?;
        run_in(i, "iptables", &["-w", "-I", "INPUT", "-j", CHAIN])?;
    }
    Ok(())
}

/// Node `to` drops packets from node `from` (both its own and its proxy-view address), with
/// probability `p` (1.0 = all).
///
/// # Errors
/// An `iptables` failure.
pub fn drop_from(to: usize, from: usize, p: f64) -> anyhow::Result<()> {
    for src in [node_ip(from), view_ip(from)] {
        let src = src.to_string();
        let mut args = vec!["-w", "-A", CHAIN, "-s", src.as_str()];
        let prob = format!("{p:.3}");
        if p < 1.0 {
            args.extend_from_slice(&[
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                prob.as_str(),
            ]);
        }
        args.extend_from_slice(&["-j", "DROP"]);
        run_in(to, "iptables", &args)?;
    }
    Ok(())
}

/// Flushes node `i`'s chain (only the harness's chain: other rules are untouched).
///
/// # Errors
/// An `iptables` failure.
pub fn flush_rules(i: usize) -> anyhow::Result<()> {
    run_in(i, "iptables", &["-w", "-F", CHAIN]).map(|_| ())
}

/// A node's data disk: an ext4 file system in a sparse image, loop-mounted. A power cut is
/// simulated by copying the image (what the block device holds: written-back and fsynced data
/// only — dirty pages in the page cache are not in it), dropping the old mount and mounting
/// the copy.
#[derive(Debug)]
pub struct Disk {
    image: PathBuf,
    mount: PathBuf,
    device: Option<String>,
}

impl Disk {
    /// Creates a `size_mib` image at `image`, formats and mounts it at `mount`.
    ///
    /// # Errors
    /// A failed `mkfs`, `losetup` or `mount`.
    pub fn create(image: &Path, mount: &Path, size_mib: u64) -> anyhow::Result<Disk> {
        std::fs::create_dir_all(mount).with_context(|| format!("mkdir {}", mount.display()))?;
        let f =
            std::fs::File::create(image).with_context(|| format!("create {}", image.display()))?;
        f.set_len(size_mib << 20)
            .with_context(|| format!("size {}", image.display()))?;
        drop(f);
        run("mkfs.ext4", &["-q", "-F", &image.display().to_string()])?;
        let mut disk = Disk {
            image: image.to_path_buf(),
            mount: mount.to_path_buf(),
            device: None,
        };
        disk.attach()?;
        Ok(disk)
    }

    fn attach(&mut self) -> anyhow::Result<()> {
        let dev = run(
            "losetup",
            &["-f", "--show", &self.image.display().to_string()],
        )?
        .trim()
        .to_string();
        if let Err(e) = run("mount", &[&dev, &self.mount.display().to_string()]) {
            let _ = run("losetup", &["-d", &dev]);
            return Err(e);
        }
        self.device = Some(dev);
        Ok(())
    }

    fn detach(&mut self) -> anyhow::Result<()> {
        if let Some(dev) = self.device.take() {
            run("umount", &[&self.mount.display().to_string()])?;
            run("losetup", &["-d", &dev])?;
        }
        Ok(())
    }

    /// The power cut. The node's process must already be dead. Everything the kernel had not
    /// written to the device is lost, as on real power loss; the file system then recovers from
    /// its journal at mount.
    ///
    /// # Errors
    /// A failed copy, unmount or mount.
    pub fn power_cut(&mut self) -> anyhow::Result<()> {
        let crash = self.image.with_extension("crash");
        run(
            "cp",
            &[
                "--sparse=always",
                &self.image.display().to_string(),
                &crash.display().to_string(),
            ],
        )?;
        // Unmounting writes the dirty pages back — into the image that is thrown away.
        self.detach()?;
        std::fs::rename(&crash, &self.image)
            .with_context(|| format!("rename {}", crash.display()))?;
        self.attach()
    }

    /// Unmounts and removes the image (keeps it when `keep`).
    ///
    /// # Errors
    /// A failed unmount.
    pub fn remove(mut self, keep: bool) -> anyhow::Result<()> {
        self.detach()?;
        if !keep {
            let _ = std::fs::remove_file(&self.image);
        }
        Ok(())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}
