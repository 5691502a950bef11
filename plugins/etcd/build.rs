// etcd-client's build script runs protoc through `tools/protoc` (see `.cargo/config.toml`),
// which finds the binary this build-dependency unpacks. Naming the crate here makes sure cargo
// downloads it for every build of this crate.
fn main() {
    let _ = protoc_bin_vendored::protoc_bin_path();
    println!("cargo:rerun-if-changed=build.rs");
}
