//! tenet's policy server as a Pacemaker package on a real 3-node Pacemaker + Corosync
//! cluster with STONITH (`tests/ha/cluster.sh`: network, mount and UTS namespaces on
//! this machine; needs root, pacemaker, corosync and resource-agents; skipped with a
//! printed reason when they are missing, a failure when `TENET_REQUIRE_HA=1`).
//!
//! Up; serial 2 published, every member converges. Then, for a node crash (fenced), a
//! planned switchover (standby) and an application failure (the policyd listener on the
//! active node is killed): the package moves; agents that run during the gap report the
//! master unreachable and keep their configuration (their sandbox unchanged); afterwards
//! every agent fetches the same serial from the new master by the same name. A split
//! brain, a second policyd promoted by hand with a higher serial that half the members
//! ask, leaves every member on the highest serial. The takeover times are printed
//! (`mode=... takeover_ms=...`), never asserted.
//!
//! Then the DCE package (`tests/tests/cluster/dce.rs`): a second group `dce` (VIP +
//! ocf:tenet:package package=dce) runs the DCE plans from the signed bundle. After a
//! crash of its node, on the takeover node the stale Ep.db and creds/* were gone before
//! start.dce ran and start.dfs ran after it, once each (a re-probe everywhere and the
//! same event id by hand run nothing: a replay); with start.dce failing on the third
//! node, moving the group there fails the start with the step in the exit reason
//! (crm_mon shows it), start.dfs never runs there, the stop plan cleans up, and the
//! group runs cleanly elsewhere (`dce_takeover_ms` = VIP up to start.dfs done).
//!
//! Then a fourth member (`tests/tests/cluster/grow.rs`): node4 joins the running
//! cluster (node4 in every corosync.conf, one `corosync-cfgtool -R`, corosync and
//! pacemakerd started on node4); the membership alert Pacemaker runs on the node event
//! (packaging/pacemaker/tenet-members-alert) writes the proposal naming node4; the
//! administrator takes it, node4 runs `tenet-agent join` and `tenet-keys approve`
//! enrols it; it converges to the next serial, takes the policy server over when the
//! three others are in standby and serves every member the next one; revoked, it is
//! refused (403) and keeps its last serial, and `tenet-keys members` reports it.
//! `cluster.sh down` runs whatever happens.

#[cfg(test)]
#[path = "cluster/failover.rs"]
mod failover;
