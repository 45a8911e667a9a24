/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/pin_project_lite-608cf4b5ece301c6.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.17/src/lib.rs

/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/libpin_project_lite-608cf4b5ece301c6.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.17/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.17/src/lib.rs:
