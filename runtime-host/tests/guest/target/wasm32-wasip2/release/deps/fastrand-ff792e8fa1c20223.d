/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/fastrand-ff792e8fa1c20223.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/fastrand-1.9.0/src/lib.rs

/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/libfastrand-ff792e8fa1c20223.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/fastrand-1.9.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/fastrand-1.9.0/src/lib.rs:
