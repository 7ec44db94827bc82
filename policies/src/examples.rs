//! The example policy trees shipped under `policies/examples/`, embedded so the
//! agent's `demo` works from the binary alone.

/// `examples/dce-cluster`: the DCE/DFS cluster of the HACMP guide, as (relative path, text).
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
];
