//! Compiles the OIP v2 gRPC service definition into Rust (server and client) with protox, so
//! that building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Raw tensor contents are handed on without a copy.
        .bytes(".inference")
        .compile_fds(descriptors)?;
    Ok(())
}
