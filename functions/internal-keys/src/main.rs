fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(internal_keys::routes())
}
