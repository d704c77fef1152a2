fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(oauth_refresh::routes())
}
