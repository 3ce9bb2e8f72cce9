//! Generates the tonic/prost code for RaftMQ's .proto files with a vendored
//! protoc, so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Entry bodies and snapshot chunks become `bytes::Bytes`: decoded without a copy.
    config.bytes(["."]);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/raft_log.proto"],
        &["proto"],
    )?;
    Ok(())
}
