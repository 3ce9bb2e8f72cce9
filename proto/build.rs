//! Generates the tonic/prost code for RaftMQ's .proto files with a vendored
//! protoc, so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Entry bodies and snapshot chunks become `bytes::Bytes`: decoded without a copy.
    // (Applies to every bytes field, RocketMQ message bodies included.)
    config.bytes(["."]);
    println!("cargo:rerun-if-changed=proto");
    // The vendored protoc's own include dir provides google/protobuf/*.proto
    // (Timestamp, Duration), which prost maps to `prost_types`.
    let wkt_include = protoc_bin_vendored::include_path()?;
    let wkt_include = wkt_include
        .to_str()
        .ok_or("protoc include path is not UTF-8")?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(
            config,
            &[
                "proto/raft_log.proto",
                // RocketMQ 5 gRPC protocol (apache.rocketmq.v2), spoken by the official SDKs.
                "proto/apache/rocketmq/v2/definition.proto",
                "proto/apache/rocketmq/v2/service.proto",
                // RaftMQ's admin service, spoken by mqadmin.
                "proto/raftmq/admin/v1/admin.proto",
            ],
            &["proto", wkt_include],
        )?;
    Ok(())
}
