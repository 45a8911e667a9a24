//! A smaller guest stack than Rust's 1 MiB default: the stack sits in the
//! object's linear memory, and a hub whose memory grows keeps all of it
//! resident, so with hundreds of live hubs the default stack alone costs
//! hundreds of MiB. Object handlers do not recurse deeply (JSON nesting is
//! bounded by serde_json's recursion limit).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=262144");
    }
}
