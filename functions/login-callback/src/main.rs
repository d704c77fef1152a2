fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(login_callback::routes())
}
