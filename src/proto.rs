//! Code generated from `proto/` by `build.rs`, and the descriptor set reflection serves.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `tokenmint.auth.v1`.
pub mod auth {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tokenmint.auth.v1");
    }
}

/// `tokenmint.admin.v1`.
pub mod admin {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tokenmint.admin.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Tokenmint proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenmint_descriptor.bin"));
