/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/edgegate_test_guest-e35a1aa626d85a21.d: src/lib.rs Cargo.toml

/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/libedgegate_test_guest-e35a1aa626d85a21.rmeta: src/lib.rs Cargo.toml

src/lib.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
