fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(access_tokens::routes())
}
