//! Builds the whole bench (namespaces, firewall, sshd, targets, user manager,
//! units) and tears it all down in Drop — also after a panic or Ctrl-C, and
//! also when setup stops half way.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::cli::Options;
use crate::faults::Fault;
use crate::lane::Lane;
use crate::netns::{self, Netns};
use crate::sshd::{Keys, Sshd};
use crate::targets::LineServer;
use crate::tools::{self, Instance, Tool};
use crate::usermgr::{self, UserManager};
use crate::{firewall, stop};

pub struct Bench {
    pub pid: u32,
    pub dir: PathBuf,
    pub client: Option<Arc<Netns>>,
    pub lanes: Vec<Lane>,
    pub mgr: Option<Arc<UserManager>>,
    targets: Vec<LineServer>,
    cgroup: String,
    /// Why tool A cannot run, if it cannot.
    pub a_unavailable: Option<String>,
    /// Lanes that could not be set up, ignored.
    server_nss: Vec<Netns>,
}

impl Bench {
    pub fn new() -> Bench {
        let pid = std::process::id();
        Bench {
            pid,
            dir: PathBuf::from(format!("/tmp/tcb-fault-bench-{pid}")),
            client: None,
            lanes: Vec::new(),
            mgr: None,
            targets: Vec::new(),
            cgroup: format!("tcb-fault-bench-{pid}"),
            a_unavailable: None,
            server_nss: Vec::new(),
        }
    }

    fn step(&self, what: &str) -> Result<(), String> {
        if stop::requested() {
            return Err("interrupted".into());
        }
        eprintln!("[setup] {what}");
        Ok(())
    }

    pub fn setup(&mut self, opts: &Options) -> Result<(), String> {
        let pid = self.pid;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut lane_numbers: Vec<u8> = opts.faults.iter().map(|f| f.number()).collect();
        if opts.footprint_minutes > 0.0 {
            lane_numbers.insert(0, 0);
        }

        self.step("namespaces, veth pairs, nftables")?;
        let client = Arc::new(Netns::create(&format!("tcb-client-{pid}"))?);
        self.client = Some(client.clone());
        for &n in &lane_numbers {
            let server = Netns::create(&format!("tcb-server{n}-{pid}"))?;
            let server_if = "vc".to_string();
            let res = netns::veth(
                &client,
                &format!("vs{n}"),
                &format!("{}/30", tools::client_ip(n)),
                &server,
                &server_if,
                &format!("{}/30", tools::server_ip(n)),
            )
            .and_then(|_| firewall::install(&server, &server_if));
            self.server_nss.push(server);
            res?;
        }
        firewall::check_per_netns(self.server_nss.last().expect("one lane at least"))?;

        self.step("keys and sshd")?;
        let servers: Vec<(String, u16)> = lane_numbers
            .iter()
            .flat_map(|&n| {
                Tool::ALL
                    .iter()
                    .map(move |&t| (tools::server_ip(n), tools::ssh_port(t)))
            })
            .collect();
        let keys = Keys::create(&self.dir, &servers)?;
        let ports: Vec<u16> = Tool::ALL.iter().map(|&t| tools::ssh_port(t)).collect();
        let mut sshds = Vec::new();
        for (k, &n) in lane_numbers.iter().enumerate() {
            let mut sshd = if Fault::from_number(n) == Some(Fault::Crowd) {
                Sshd::crowd(&self.dir, n, &tools::server_ip(n), &ports, &keys)?
            } else {
                Sshd::new(&self.dir, n, &tools::server_ip(n), &ports, &keys)?
            };
            sshd.start(&self.server_nss[k])?;
            sshds.push(sshd);
        }

        self.step("forward targets")?;
        self.targets.push(LineServer::start(
            &client,
            ([127, 0, 0, 1], tools::CLIENT_TARGET_PORT).into(),
            tools::CLIENT_BANNER,
        )?);
        for (k, &n) in lane_numbers.iter().enumerate() {
            self.targets.push(LineServer::start(
                &self.server_nss[k],
                ([127, 0, 0, 1], tools::SERVER_TARGET_PORT).into(),
                &tools::server_banner(n),
            )?);
        }

        self.step("systemd --user in the client namespace")?;
        let mgr = Arc::new(UserManager::start(&client, &self.dir, &self.cgroup)?);
        self.mgr = Some(mgr.clone());

        self.step("units")?;
        let mut tools_run: Vec<Tool> = opts.tools.clone();
        let crowd = opts.crowd;
        let lane_instances = |n: u8, tools: &[Tool]| -> Vec<Instance> {
            tools
                .iter()
                .flat_map(|&t| {
                    if Fault::from_number(n) == Some(Fault::Crowd) {
                        (0..crowd)
                            .map(|k| Instance::crowd_member(t, n, k))
                            .collect()
                    } else {
                        vec![Instance::new(t, n)]
                    }
                })
                .collect()
        };
        let a_instances: Vec<Instance> = lane_numbers
            .iter()
            .flat_map(|&n| lane_instances(n, &[Tool::A]))
            .collect();
        if tools_run.contains(&Tool::A)
            && let Err(e) = self.write_a_units(&a_instances, &keys, &mgr)
        {
            eprintln!("[setup] tool A not available: {e}");
            self.a_unavailable = Some(e);
            tools_run.retain(|&t| t != Tool::A);
        }
        let peers: Vec<Tool> = tools_run
            .iter()
            .copied()
            .filter(|&t| t != Tool::A)
            .collect();
        for &n in &lane_numbers {
            for inst in lane_instances(n, &peers) {
                let path = mgr.unit_dir.join(&inst.unit);
                std::fs::write(&path, tools::peer_unit(&inst, &keys, &self.dir))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        mgr.systemctl(&["daemon-reload"])?;

        for (&n, sshd) in lane_numbers.iter().zip(sshds) {
            let server = self.server_nss.remove(0);
            let instances = lane_instances(n, &tools_run);
            self.lanes.push(Lane {
                n,
                fault: Fault::from_number(n),
                client: client.clone(),
                server,
                server_if: "vc".into(),
                sshd: Mutex::new(sshd),
                instances,
                mgr: mgr.clone(),
            });
        }
        let units: Vec<String> = self
            .lanes
            .iter()
            .flat_map(|l| l.instances.iter().map(|i| i.unit.clone()))
            .collect();
        if !units.is_empty() {
            let mut args = vec!["start", "--no-block"];
            args.extend(units.iter().map(String::as_str));
            mgr.systemctl(&args)?;
        }
        Ok(())
    }

    /// tunnels.yaml with one tunnel per instance of A, rendered by `tunnelctl render`.
    fn write_a_units(
        &self,
        instances: &[Instance],
        keys: &Keys,
        mgr: &UserManager,
    ) -> Result<(), String> {
        let bins = tools::tunnelctl_bins()?;
        let mut yaml = String::from("# generated by benches/faults\ntunnels:\n");
        for inst in instances {
            yaml.push_str(&tools::a_config_entry(inst, keys));
        }
        let config = self.dir.join("tunnels.yaml");
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut rendered = String::new();
        for inst in instances {
            let unit = tools::render_a(&bins, &config, &inst.a_name)?;
            let path = mgr.unit_dir.join(&inst.unit);
            std::fs::write(&path, &unit).map_err(|e| format!("{}: {e}", path.display()))?;
            // The watchdog's log, kept with the others (this user manager has no journal):
            // a drop-in beside the rendered unit, which stays as tunnelctl wrote it.
            let dropin = mgr.unit_dir.join(format!("{}.d", inst.unit));
            let log = self.dir.join(format!("watchdog-{}.log", inst.a_name));
            std::fs::create_dir_all(&dropin)
                .and_then(|_| {
                    std::fs::write(
                        dropin.join("bench-log.conf"),
                        format!(
                            "[Service]\nStandardOutput=append:{log}\nStandardError=append:{log}\n",
                            log = log.display()
                        ),
                    )
                })
                .map_err(|e| format!("{}: {e}", dropin.display()))?;
            if rendered.is_empty() {
                let _ = write!(rendered, "{unit}");
            }
        }
        // Kept for the report: the unit A actually ran with.
        let _ = std::fs::write(self.dir.join("tool-a-unit.service"), &rendered);
        Ok(())
    }

    pub fn a_unit_text(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("tool-a-unit.service")).ok()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        eprintln!("[teardown] stopping the user manager, sshd, namespaces");
        if let Some(mgr) = &self.mgr {
            mgr.shutdown();
        }
        for lane in &self.lanes {
            lane.sshd.lock().map(|mut s| s.kill_all(&lane.server)).ok();
            lane.server.destroy();
        }
        for ns in &self.server_nss {
            ns.destroy();
        }
        self.targets.clear();
        if let Some(c) = &self.client {
            c.destroy();
        }
        usermgr::remove_cgroups(&self.cgroup);
        if !self.dir.as_os_str().is_empty() && self.dir.starts_with("/tmp") {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
