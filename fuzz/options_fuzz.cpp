// The options string as an attacker-free but arbitrary user input: every input either parses
// or fails with config_error; nothing else may escape, crash or trip a sanitizer.

#include <kaminari/error.hpp>
#include <kaminari/options.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const auto client = kaminari::parse_client_options(text);
        (void)kaminari::describe(client);
    } catch (const kaminari::config_error&) {
    }
    try {
        const auto server = kaminari::parse_server_options(text);
        (void)kaminari::describe(server);
    } catch (const kaminari::config_error&) {
    }
    return 0;
}
