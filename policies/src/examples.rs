//! The example policy trees shipped under `policies/examples/`, embedded so the
//! agent's `demo` works from the binary alone.

/// `examples/dce-cluster`: the DCE/DFS cluster of the HACMP guide, with its
/// failover plans, as (relative path, text).
pub const DCE_CLUSTER: &[(&str, &str)] = &[
    (
        "cluster.toml",
        include_str!("../examples/dce-cluster/cluster.toml"),
    ),
    ("dce.toml", include_str!("../examples/dce-cluster/dce.toml")),
    (
        "files/motd-dce",
        include_str!("../examples/dce-cluster/files/motd-dce"),
    ),
    (
        "plans.toml",
        include_str!("../examples/dce-cluster/plans.toml"),
    ),
];

/// `examples/nfs-cluster`: an NFS server package with file lock migration (the
/// Serviceguard NFS Toolkit), as (relative path, text).
pub const NFS_CLUSTER: &[(&str, &str)] = &[
    (
        "cluster.toml",
        include_str!("../examples/nfs-cluster/cluster.toml"),
    ),
    ("nfs.toml", include_str!("../examples/nfs-cluster/nfs.toml")),
];
