//! The HA adapters in `packaging/` against a real `tenet-policyd` and a signed bundle,
//! each called the way its engine calls it:
//!
//! - the OCF agent passes `ocf-tester`, its meta-data validates against the
//!   resource-agents DTD and RELAX NG schema, and its failures map to OCF codes with an
//!   `ocf-exit-reason:` line;
//! - the package agent (ocf:tenet:package) passes `ocf-tester` with the HA tests' DCE
//!   plans in a sandbox root of fake /usr/bin/start.dce etc. (each start and stop runs
//!   its plan once, in order); a failed step fails the start with the step named in the
//!   exit reason and start.dfs never runs; a start whose tenet-agent is SIGKILLed in
//!   start.dce is refused by the next start (exit reason: the step and the event id)
//!   and resumed by a start with resume=true (finished steps are not run again);
//! - the Serviceguard NFS external script (tenet-nfs.sh) with SG_* and PEV_* variables
//!   and the example nfs-cluster policy: validate, start (the lock migration in order,
//!   logged through sg_log), a repeated start running nothing, stop, a failed step,
//!   and a start after a killed agent resumed with no finished step run again;
//! - the Serviceguard external script under `env -i` with only SG_* and PEV_* variables
//!   (start, stop, validate; 0/1/2), and its service command exiting when serving stops;
//! - the PowerHA start, stop and monitor scripts with no arguments and no environment;
//!   the DCE controller (tenet-dce-start/stop/monitor) with the example dce-cluster
//!   policy: a repeated start replays its kept event id, a start after a killed agent
//!   resumes it (no finished step runs again), a failed step fails it;
//!   the node_down post-event command with PowerHA's arguments: the takeover only on
//!   the survivor holding the package, once (a later controller start runs nothing);
//!   the node_up pre- and post-event pair with PowerHA's arguments and no environment:
//!   the stop side only on the standby in the pre-event, the start side only on the
//!   returning owner in the post-event, tenet's exit codes passed on;
//! - the keepalived notify script with each state, and its vrrp_script check; two
//!   notifies started nearly together end in the later transition;
//! - after a start that serves, the policyd OCF agent, the keepalived notify script
//!   and the PowerHA start script run the member's master-move plans (a real plan
//!   writing a file in a sandbox root), and a master-move that fails never fails the
//!   start.
//! - membership hooks (`members.rs`): the Pacemaker alert agent on node alerts with the
//!   real `cibadmin` on a CIB file (the shipped alert validates against the CIB schema;
//!   a node added to the CIB is proposed as a member, one removed is proposed for
//!   removal and revocation, in sync nothing is left); the PowerHA
//!   reconfig_topology_complete post-event command and the Serviceguard policyd
//!   package's start with fixture `cllsnode` and `cmviewcl` printing their formats; the
//!   Serviceguard start also sends master-move, and neither ever fails the start.
//!
//! Every listener the scripts start is killed by PID when the test ends.

#[cfg(test)]
#[path = "ha_scripts/contracts.rs"]
mod contracts;
