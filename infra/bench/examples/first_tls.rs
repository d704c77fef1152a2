//! The cost of a process's first TLS handshake (rustls on aws-lc, as every function's first AWS
//! call on Lambda): the moment aws-lc seeds its random generator, which is where its CPU-jitter
//! entropy source spends its time. `scripts/bench` talks plain HTTP to moto, so it never sees this;
//! BENCHMARKS.md has the figures with and without `AWS_LC_SYS_NO_JITTER_ENTROPY`, taken with:
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
//!   -keyout /tmp/tls.key -out /tmp/tls.crt -days 1
//! openssl s_server -accept 127.0.0.1:4433 -cert /tmp/tls.crt -key /tmp/tls.key -www -quiet &
//! cargo build --release -p keyward-bench --example first_tls    # add AWS_LC_SYS_NO_JITTER_ENTROPY=0 for "before"
//! for i in $(seq 30); do "$CARGO_TARGET_DIR"/release/examples/first_tls https://127.0.0.1:4433/; done
//! ```
//!
//! It prints the milliseconds to the handshake's end; the self-signed certificate is refused (so
//! the second column is `false`) after the randomness was drawn.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args().nth(1).expect("an https URL");
    let started = std::time::Instant::now();
    let result = reqwest::Client::new().get(url).send().await;
    println!("{:.3} {}", started.elapsed().as_secs_f64() * 1000.0, result.is_ok());
}
