#!/usr/bin/env bash
# Builds the `tenet` packages: target/debian/tenet_*.deb (cargo-deb) and
# target/generate-rpm/tenet-*.rpm (cargo-generate-rpm), from one release build.
#   scripts/package.sh          both
#   scripts/package.sh deb      the .deb only
#   scripts/package.sh rpm      the .rpm only
#   scripts/package.sh static   static musl binaries for hosts older than glibc 2.34
#                               (needs: rustup target add x86_64-unknown-linux-musl;
#                               apt install musl-tools), no package
# Needs: cargo install cargo-deb cargo-generate-rpm (docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

if [ "$what" = static ]; then
  cargo build --release --locked --target x86_64-unknown-linux-musl \
    -p tenet-agent -p tenet-policyd -p tenet-keys
  exit 0
fi

# The three binaries, stripped (profile.release), and the man pages and shell
# completions generated from their clap definitions.
cargo build --release --locked -p tenet-agent -p tenet-policyd -p tenet-keys
rm -rf packaging/generated
cargo run --release --locked -q -p xtask -- gen-docs packaging/generated

if [ "$what" = all ] || [ "$what" = deb ]; then
  cargo deb --locked -p tenet-agent --no-build
fi
if [ "$what" = all ] || [ "$what" = rpm ]; then
  cargo generate-rpm -p agent
fi
