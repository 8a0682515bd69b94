#include "kaminari/log.hpp"

#include <array>
#include <chrono>
#include <ctime>
#include <string>
#include <unistd.h>

namespace kaminari::log {

namespace detail {
std::atomic<int> current_level{static_cast<int>(level::info)};
}

namespace {
std::array<char, 32> program_name{"kaminari"};

const char* level_name(level lv) noexcept {
    switch (lv) {
    case level::error:
        return "ERROR";
    case level::warn:
        return "WARN";
    case level::info:
        return "INFO";
    case level::debug:
        return "DEBUG";
    }
    return "?";
}
} // namespace

std::string what(const std::exception_ptr& e) noexcept {
    try {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            return ex.what();
        } catch (...) {
            return "an unknown exception";
        }
    } catch (...) {
        return {}; // bad_alloc copying the text
    }
}

void set_level(level lv) noexcept {
    detail::current_level.store(static_cast<int>(lv), std::memory_order_relaxed);
}

bool parse_level(std::string_view text, level& out) noexcept {
    constexpr std::array<std::pair<std::string_view, level>, 4> names{{{"error", level::error},
                                                                       {"warn", level::warn},
                                                                       {"info", level::info},
                                                                       {"debug", level::debug}}};
    for (const auto& [name, lv] : names) {
        if (text == name) {
            out = lv;
            return true;
        }
    }
    return false;
}

void set_program(std::string_view name) noexcept {
    const std::size_t n = std::min(name.size(), program_name.size() - 1);
    name.copy(program_name.data(), n);
    program_name[n] = '\0';
}

void detail::write_line(level lv, std::string_view text) noexcept {
    try {
        const auto now = std::chrono::system_clock::now();
        const std::time_t secs = std::chrono::system_clock::to_time_t(now);
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
        std::tm tm{};
        gmtime_r(&secs, &tm);
        std::string line =
            fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {} {}\n", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count(),
                        program_name.data(), level_name(lv), text);
        // One write(2) per line keeps lines whole across threads.
        const char* p = line.data();
        std::size_t left = line.size();
        while (left > 0) {
            const ssize_t w = ::write(STDERR_FILENO, p, left);
            if (w <= 0) {
                return;
            }
            p += w;
            left -= static_cast<std::size_t>(w);
        }
    } catch (...) {
    }
}

} // namespace kaminari::log
