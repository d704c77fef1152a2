fn main() -> Result<(), lambda_http::Error> {
    keyward::app::run(llm_keys::routes())
}
