fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(device_auth::routes())
}
