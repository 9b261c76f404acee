//! Compiles `proto/ringgate.proto` with `protox` (pure Rust), so a fresh
//! machine needs no `protoc` to build ringgate.

fn main() {
    println!("cargo:rerun-if-changed=proto/ringgate.proto");
    let fds = protox::compile(["proto/ringgate.proto"], ["proto"])
        .expect("proto/ringgate.proto must compile");
    prost_build::Config::new()
        // Payloads are `bytes::Bytes`: decoding a batch slices, never copies.
        .bytes(["."])
        .compile_fds(fds)
        .expect("prost code generation");
}
