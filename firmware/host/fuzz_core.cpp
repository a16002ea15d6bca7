// libFuzzer target for the LED-ring protocol core (built with ASan + UBSan by `make -C firmware fuzz`).
//
// The input is a byte stream from the serial port, interleaved with control bytes that advance the clock,
// change the ADC reading or inject a receive overrun. After every step the core must keep its invariants:
// every line it writes is framed with a correct CRC and at most 110 bytes, it writes at most one reply per
// received line (plus events), its state stays in range, and it never reads or writes out of bounds
// (ASan) or hits undefined behaviour (UBSan). A hang would be caught by libFuzzer's -timeout.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "host_platform.h"
#include "ledring_core.h"

namespace {

void fail(const char *why, const std::string &out) {
    std::fprintf(stderr, "invariant violated: %s\noutput: %s\n", why, out.c_str());
    std::abort();
}

int count_lines_checked(const std::string &out) {
    int lines = 0;
    size_t start = 0;
    while (start < out.size()) {
        const size_t nl = out.find('\n', start);
        if (nl == std::string::npos) fail("unterminated board line", out);
        const size_t n = nl - start;
        if (n + 1 > 110) fail("board line too long", out);
        if (n < 3 || out[nl - 3] != '*') fail("board line without CRC field", out);
        const uint8_t crc = ledring_crc8(reinterpret_cast<const uint8_t *>(out.data() + start),
                                         static_cast<uint16_t>(n - 3));
        char want[3];
        std::snprintf(want, sizeof want, "%02X", crc);
        if (out.compare(nl - 2, 2, want) != 0) fail("board line with wrong CRC", out);
        if (!(out.compare(start, 2, "!:") == 0 || out[start + 2] == ':')) fail("line is neither reply nor event", out);
        if (out[start] != '!') lines++;
        start = nl + 1;
    }
    return lines;
}

void check_state() {
    const LedringBoard &B = ledring_board;
    if (B.timeout_ms > LEDRING_MAX_TIMEOUT_MS) fail("timeout out of range", "");
    if (B.line_len >= LEDRING_MAX_LINE) fail("line buffer overrun", "");
    if (B.last_line_len >= LEDRING_MAX_LINE || B.last_reply_len > LEDRING_MAX_REPLY) fail("cache overrun", "");
    for (int i = 0; i < LEDRING_NUM_LEDS; i++) {
        const uint16_t bri = static_cast<uint16_t>(B.shown_bri + 1);
        if (B.wire[3 * i] != ((B.shown[3 * i + 1] * bri) >> 8) || B.wire[3 * i + 1] != ((B.shown[3 * i] * bri) >> 8) ||
            B.wire[3 * i + 2] != ((B.shown[3 * i + 2] * bri) >> 8))
            fail("wire bytes do not match shown colours and brightness", "");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g_host = HostPlatform{};
    host_boot();
    (void)host_take_output();
    uint32_t lines_in = 0;
    bool lost = false;
    for (size_t i = 0; i < size; i++) {
        const uint8_t b = data[i];
        // 0x01..0x03 are control bytes when followed by an operand byte; everything else goes to the UART.
        if (b >= 0x01 && b <= 0x03 && i + 1 < size) {
            const uint8_t arg = data[++i];
            if (b == 0x01) host_advance(static_cast<uint32_t>(arg) * 97u);  // up to ~25 s
            else if (b == 0x02) g_host.adc = static_cast<uint16_t>(arg * 4u + (arg & 3u));
            else lost = true;
        } else {
            if (lost) ledring_rx_lost();
            lost = false;
            ledring_rx_byte(b);
            if (b == '\n') lines_in++;
            if (g_host.reboot_requested) host_boot();
        }
        if (g_host.out.size() > 4096 || i + 1 == size) {
            const std::string out = host_take_output();
            const int replies = count_lines_checked(out);
            if (static_cast<uint32_t>(replies) > lines_in) fail("more replies than request lines", out);
            lines_in = 0;
        }
        check_state();
    }
    return 0;
}
