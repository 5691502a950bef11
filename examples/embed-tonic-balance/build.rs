//! The gRPC code of `proto/whoami.proto`. protoc comes from `PROTOC` (the workspace's
//! `.cargo/config.toml` points it at `tools/protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::compile_protos("proto/whoami.proto")?;
    Ok(())
}
