//! Compiles the public API protos with the pure-Rust `protox` compiler (no `protoc` needed) and
//! writes the file descriptor set that server reflection serves.

use prost::Message;
use std::{env, fs, io, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/tokenmint/auth/v1/auth.proto",
    "proto/tokenmint/admin/v1/admin.proto",
];

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    // PostgreSQL variants of the end-to-end tests are marked ignored, not passed, when they
    // have no database to run against: `cargo test` then counts them as ignored.
    println!("cargo::rustc-check-cfg=cfg(tokenmint_postgres_tests)");
    println!("cargo:rerun-if-env-changed=TOKENMINT_TEST_DATABASE_URL");
    if env::var("TOKENMINT_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=tokenmint_postgres_tests");
    }
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"]).map_err(io::Error::other)?;
    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?);
    fs::write(
        out_dir.join("tokenmint_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
}
