/work/main/runtime-host/tests/guest/target/release/deps/wstd_macro-105627380e331438.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wstd-macro-0.6.8/src/lib.rs

/work/main/runtime-host/tests/guest/target/release/deps/libwstd_macro-105627380e331438.so: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wstd-macro-0.6.8/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wstd-macro-0.6.8/src/lib.rs:
