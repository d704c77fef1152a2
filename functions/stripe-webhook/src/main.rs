fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(stripe_webhook::routes())
}
