// Host tests of the LED-ring protocol core against the shared vectors (protocols/led-ring-vectors.json,
// compiled in from the generated header host/led_ring_vectors.h), plus a few properties the vectors cannot
// express (counter and clock wrap-around, ADC averaging).
//
//   build/host/test_core                   # run
//   build/host/test_core --write-seeds D   # fuzzer seed corpus
//
// VECTORS_HEADER names the header to compile in (the Makefile's VECTORS_H; the tests build one from a
// deliberately wrong vectors file to see this program fail).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "host_platform.h"
#include "ledring_core.h"

#ifndef VECTORS_HEADER
#define VECTORS_HEADER "led_ring_vectors.h"
#endif
#include VECTORS_HEADER

namespace {

int g_failures = 0;
int g_checks = 0;
std::string g_case;

std::string printable(const std::string &s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '\n') o += "\\n";
        else if (c == '\r') o += "\\r";
        else if (c < 0x20 || c >= 0x7F) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02X", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o;
}

void check(bool ok, const std::string &what) {
    g_checks++;
    if (!ok) {
        g_failures++;
        std::printf("FAIL [%s] %s\n", g_case.c_str(), what.c_str());
    }
}

void check_eq(const std::string &got, const std::string &want, const std::string &what) {
    check(got == want, what + ": got \"" + printable(got) + "\" want \"" + printable(want) + "\"");
}

void check_eq(int64_t got, int64_t want, const std::string &what) {
    check(got == want, what + ": got " + std::to_string(got) + " want " + std::to_string(want));
}

std::string hex_of(const uint8_t *p, size_t n) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string s;
    for (size_t i = 0; i < n; i++) {
        s += kHex[p[i] >> 4];
        s += kHex[p[i] & 15];
    }
    return s;
}

std::string wire_rgb_hex() {
    if (g_host.frames.empty()) return "";
    const std::vector<uint8_t> &f = g_host.frames.back();
    std::vector<uint8_t> rgb(f.size());
    for (size_t i = 0; i + 2 < f.size(); i += 3) {
        rgb[i] = f[i + 1];
        rgb[i + 1] = f[i];
        rgb[i + 2] = f[i + 2];
    }
    return hex_of(rgb.data(), rgb.size());
}

// Every line the board writes must end in "*HH\n" with the right CRC.
void check_lines_framed(const std::string &out) {
    size_t start = 0;
    while (start < out.size()) {
        const size_t nl = out.find('\n', start);
        check(nl != std::string::npos, "output ends with an unterminated line");
        if (nl == std::string::npos) return;
        const std::string line = out.substr(start, nl - start);
        check(line.size() + 1 <= 110, "board line longer than 110 bytes: " + printable(line));
        bool ok = line.size() >= 3 && line[line.size() - 3] == '*';
        if (ok) {
            const unsigned crc = ledring_crc8(reinterpret_cast<const uint8_t *>(line.data()),
                                              static_cast<uint16_t>(line.size() - 3));
            char want[3];
            std::snprintf(want, sizeof want, "%02X", crc);
            ok = line.compare(line.size() - 2, 2, want) == 0;
        }
        check(ok, "bad CRC in board line " + printable(line));
        start = nl + 1;
    }
}

std::string frame(const std::string &body) {
    char crc[4];
    std::snprintf(crc, sizeof crc, "%02X", ledring_crc8(reinterpret_cast<const uint8_t *>(body.data()),
                                                         static_cast<uint16_t>(body.size())));
    return body + "*" + crc + "\n";
}

void fresh_board(int adc) {
    g_host = HostPlatform{};
    g_host.adc = static_cast<uint16_t>(adc);
    host_boot();
}

void run_case(const vectors::Case &c, const vectors::Document &doc) {
    g_case = c.name;
    fresh_board(static_cast<int>(doc.default_adc));
    const std::string boot = host_take_output();
    const std::string boot_body = std::string("!:BOOT ") + doc.firmware + " " + std::to_string(doc.protocol);
    check_eq(boot, frame(boot_body), "boot event");
    for (const vectors::Step &st : c.steps) {
        std::string want;
        for (const vectors::Bytes &l : st.expect) want += l.str();
        std::string label;
        switch (st.kind) {
            case vectors::Step::kSend:
                label = "send " + printable(st.send.str());
                host_feed(st.send.str(), st.rx_overrun);
                break;
            case vectors::Step::kAdvanceMs:
                label = "advance " + std::to_string(st.value) + " ms";
                host_advance(static_cast<uint32_t>(st.value));
                break;
            case vectors::Step::kSetAdc:
                label = "set_adc";
                g_host.adc = static_cast<uint16_t>(st.value);
                break;
        }
        const std::string got = host_take_output();
        check_lines_framed(got);
        check_eq(got, want, label);
    }
    if (c.expect_state == nullptr) return;
    const vectors::State &s = *c.expect_state;
    const LedringBoard &B = ledring_board;
    if (s.shown) check_eq(hex_of(B.shown, sizeof B.shown), s.shown, "state.shown");
    if (s.staged) check_eq(hex_of(B.staged, sizeof B.staged), s.staged, "state.staged");
    if (s.brightness.set) check_eq(B.shown_bri, s.brightness.value, "state.brightness");
    if (s.staged_brightness.set) check_eq(B.staged_bri, s.staged_brightness.value, "state.staged_brightness");
    if (s.frame_no.set) check_eq(B.frame_no, s.frame_no.value, "state.frame_no");
    if (s.timeout_ms.set) check_eq(B.timeout_ms, s.timeout_ms.value, "state.timeout_ms");
    if (s.wire_rgb) check_eq(wire_rgb_hex(), s.wire_rgb, "state.wire_rgb (last WS2812 frame)");
}

void extra_properties() {
    g_case = "extra:frame_no_wraps";
    fresh_board(419);
    host_take_output();
    ledring_board.frame_no = 0xFFFFFFFFUL;
    host_feed(frame("01:SHOW"));
    check_eq(host_take_output(), frame("01:OK 0"), "frame_no wraps to 0");

    g_case = "extra:watchdog_across_clock_wrap";
    fresh_board(419);
    host_take_output();
    g_host.now_ms = 0xFFFFFF00UL;
    host_feed(frame("02:TIMEOUT 1000"));
    host_take_output();
    host_advance(1000);
    check_eq(host_take_output(), "", "no timeout at exactly 1000 ms across the wrap");
    host_advance(1);
    check_eq(host_take_output(), frame("!:TIMEOUT"), "timeout 1 ms later across the wrap");

    g_case = "extra:bat_averages_16_reads";
    fresh_board(500);
    host_take_output();
    const uint32_t before = g_host.adc_reads;
    host_feed(frame("03:BAT"));
    check_eq(g_host.adc_reads - before, 16, "ADC reads per BAT");
    check_eq(host_take_output(), frame("03:OK 4887"), "500*10000/1023 = 4887.6");

    g_case = "extra:show_sends_36_wire_bytes";
    fresh_board(419);
    check_eq(static_cast<int64_t>(g_host.frames.size()), 1, "one dark frame at boot");
    check_eq(static_cast<int64_t>(g_host.frames.back().size()), 36, "12 LEDs x 3 bytes");
    host_feed(frame("04:SET 2 1 2 3"));
    host_feed(frame("05:SHOW"));
    check_eq(static_cast<int64_t>(g_host.frames.size()), 2, "SHOW sends exactly one frame");
    const std::vector<uint8_t> &f = g_host.frames.back();
    check(f[6] == 2 && f[7] == 1 && f[8] == 3, "LED 2 in G,R,B order");

    g_case = "extra:split_bytes_same_result";
    fresh_board(419);
    host_take_output();
    const std::string req = frame("06:ALL 1 2 3") + frame("07:SHOW") + frame("08:STATE");
    for (char ch : req) host_feed(std::string(1, ch));
    check_eq(host_take_output(), frame("06:OK") + frame("07:OK 1") + frame("08:OK 255 1 10000 " +
                                 std::string("010203010203010203010203010203010203010203010203010203010203010203010203")),
             "byte-by-byte feed");

    g_case = "extra:every_line_gets_one_reply";
    fresh_board(419);
    host_take_output();
    uint32_t rng = 12345;
    int lines = 0;
    std::string junk;
    for (int k = 0; k < 2000; k++) {
        rng = rng * 1103515245u + 12345u;
        const char c = static_cast<char>((rng >> 16) & 0xFF);
        if (c == '\n' || c == '\r') continue;
        junk += c;
        if (k % 37 == 36) {
            junk += '\n';
            lines++;
        }
    }
    host_feed(junk);
    const std::string out = host_take_output();
    check_lines_framed(out);
    int replies = 0;
    for (char ch : out) replies += ch == '\n';
    check_eq(replies, lines, "one reply per non-empty line of noise");
}

}  // namespace

int main(int argc, char **argv) {
    const bool seeds = argc == 3 && std::strcmp(argv[1], "--write-seeds") == 0;
    if (argc != 1 && !seeds) {
        std::fprintf(stderr, "usage: %s [--write-seeds DIR]\n", argv[0]);
        return 2;
    }
    const vectors::Document &doc = vectors::kDocument;
    if (seeds) {
        int n = 0;
        for (const vectors::Case &c : doc.board_cases) {
            std::string bytes;
            for (const vectors::Step &st : c.steps)
                if (st.kind == vectors::Step::kSend) bytes += st.send.str();
            std::ofstream(std::string(argv[2]) + "/" + c.name, std::ios::binary) << bytes;
            n++;
        }
        std::printf("wrote %d seeds to %s\n", n, argv[2]);
        return 0;
    }
    g_case = "crc8";
    for (const vectors::Crc8Example &v : doc.crc8) {
        char got[3];
        std::snprintf(got, sizeof got, "%02X", ledring_crc8(reinterpret_cast<const uint8_t *>(v.data.data),
                                                            static_cast<uint16_t>(v.data.size)));
        check_eq(got, v.crc, "crc8(\"" + printable(v.data.str()) + "\")");
    }
    int cases = 0;
    for (const vectors::Case &c : doc.board_cases) {
        run_case(c, doc);
        cases++;
    }
    extra_properties();
    std::printf("%s: %d vector cases, %d checks, %d failures\n", g_failures ? "FAILED" : "ok", cases, g_checks,
                g_failures);
    return g_failures ? 1 : 0;
}
