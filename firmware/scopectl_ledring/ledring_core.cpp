// Portable protocol core of the scopectl LED-ring firmware. See ledring_core.h and
// protocols/led-ring-protocol.md. Plain C++: no Arduino core, no heap, no exceptions, no STL, so it builds
// with avr-g++ for the ATmega328P and with g++/clang++ for the host tests and the fuzzer.
#include "ledring_core.h"

#include <stddef.h>
#include <string.h>

#include "ledring_platform.h"

extern "C" {
LedringBoard ledring_board;
}

static_assert(offsetof(LedringBoard, shown_bri) == 0, "the FIL harness reads shown_bri at offset 0");
static_assert(1ULL * LEDRING_BAT_SAMPLES * 1023 * VREF_MV * DIVIDER_NUM < 4294967296ULL,
              "battery arithmetic must fit in 32 bits");

namespace {

LedringBoard &B = ledring_board;

enum ErrorCode : uint8_t { ER_CRC = 1, ER_SYNTAX = 2, ER_RANGE = 3, ER_UNKNOWN = 4, ER_TOOLONG = 5, ER_BUSY = 6 };

const char *const kErrorNames[] = {"", "CRC", "SYNTAX", "RANGE", "UNKNOWN", "TOOLONG", "BUSY"};

const uint8_t kMaxArgs = 4;

enum Command : uint8_t { C_HELLO, C_PING, C_SET, C_ALL, C_BRI, C_SHOW, C_OFF, C_BAT, C_STATE, C_TIMEOUT, C_RESET };

struct CommandSpec {
    const char *name;
    uint8_t argc;
    uint32_t max[kMaxArgs];  // inclusive upper bound of each argument (lower bound is 0)
};

const CommandSpec kCommands[] = {
    {"HELLO", 0, {0, 0, 0, 0}},
    {"PING", 0, {0, 0, 0, 0}},
    {"SET", 4, {LEDRING_NUM_LEDS - 1, 255, 255, 255}},
    {"ALL", 3, {255, 255, 255, 0}},
    {"BRI", 1, {255, 0, 0, 0}},
    {"SHOW", 0, {0, 0, 0, 0}},
    {"OFF", 0, {0, 0, 0, 0}},
    {"BAT", 0, {0, 0, 0, 0}},
    {"STATE", 0, {0, 0, 0, 0}},
    {"TIMEOUT", 1, {LEDRING_MAX_TIMEOUT_MS, 0, 0, 0}},
    {"RESET", 0, {0, 0, 0, 0}},
};
const uint8_t kNumCommands = sizeof(kCommands) / sizeof(kCommands[0]);

const char kHex[] = "0123456789ABCDEF";

// ---------------------------------------------------------------- output lines

struct Out {
    uint8_t buf[LEDRING_MAX_REPLY];
    uint8_t len;

    void ch(char c) {
        // Leave room for "*HH\n"; every line the firmware builds fits (longest: STATE, 104 bytes).
        if (len < sizeof(buf) - 4) buf[len++] = static_cast<uint8_t>(c);
    }
    void str(const char *s) {
        while (*s) ch(*s++);
    }
    void hex2(uint8_t v) {
        ch(kHex[v >> 4]);
        ch(kHex[v & 15]);
    }
    void dec(uint32_t v) {
        char tmp[10];
        uint8_t n = 0;
        do {
            tmp[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        while (n) ch(tmp[--n]);
    }
    void space_dec(uint32_t v) {
        ch(' ');
        dec(v);
    }
    // Append "*HH\n".
    void finish() {
        uint8_t crc = ledring_crc8(buf, len);
        buf[len++] = '*';
        buf[len++] = static_cast<uint8_t>(kHex[crc >> 4]);
        buf[len++] = static_cast<uint8_t>(kHex[crc & 15]);
        buf[len++] = '\n';
    }
    void send() { plat_write(buf, len); }
};

void send_event(const char *name, bool with_value, uint32_t value) {
    Out o;
    o.len = 0;
    o.str("!:");
    o.str(name);
    if (with_value) o.space_dec(value);
    o.finish();
    o.send();
}

void send_unsequenced_error(uint8_t code) {
    Out o;
    o.len = 0;
    o.str("--:ER ");
    o.dec(code);
    o.ch(' ');
    o.str(kErrorNames[code]);
    o.finish();
    o.send();
}

// ---------------------------------------------------------------- LEDs, battery

uint8_t scale(uint8_t c, uint8_t bri) {
    return static_cast<uint8_t>((static_cast<uint16_t>(c) * (static_cast<uint16_t>(bri) + 1)) >> 8);
}

void show_staged(bool count) {
    B.shown_bri = B.staged_bri;
    memcpy(B.shown, B.staged, sizeof(B.shown));
    for (uint8_t i = 0; i < LEDRING_NUM_LEDS; i++) {
        B.wire[3 * i + 0] = scale(B.shown[3 * i + 1], B.shown_bri);  // G
        B.wire[3 * i + 1] = scale(B.shown[3 * i + 0], B.shown_bri);  // R
        B.wire[3 * i + 2] = scale(B.shown[3 * i + 2], B.shown_bri);  // B
    }
    if (count) B.frame_no++;
    plat_ws2812_show(B.wire, sizeof(B.wire));
}

void switch_off() {
    memset(B.staged, 0, sizeof(B.staged));
    show_staged(true);
}

bool is_upper_hex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

uint8_t hex_value(uint8_t c) { return c <= '9' ? static_cast<uint8_t>(c - '0') : static_cast<uint8_t>(c - 'A' + 10); }

// ---------------------------------------------------------------- request handling

// Parse "<CMD>[ <ARG>]..." (the part after "SS:" and before '*'), execute it and write the reply
// payload (after "SS:") into o. Returns true when the board must reboot after sending the reply.
bool execute(const uint8_t *p, uint8_t n, Out &o) {
    uint8_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z') i++;
    const uint8_t cmd_len = i;
    uint32_t args[kMaxArgs] = {0, 0, 0, 0};
    uint8_t argc = 0;  // counts every argument (saturating at 255), only the first kMaxArgs are stored
    bool syntax_ok = cmd_len > 0;
    while (syntax_ok && i < n) {
        if (p[i] != ' ' || i + 1 >= n || p[i + 1] < '0' || p[i + 1] > '9') {
            syntax_ok = false;
            break;
        }
        i++;
        uint32_t v = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            const uint8_t d = static_cast<uint8_t>(p[i] - '0');
            // saturate at 0xFFFFFFFF: larger than every range, so "too big" becomes a RANGE error
            v = (v > (0xFFFFFFFFUL - d) / 10) ? 0xFFFFFFFFUL : v * 10 + d;
            i++;
        }
        if (argc < kMaxArgs) args[argc] = v;
        if (argc < 255) argc++;
    }
    if (!syntax_ok) {
        o.str("ER 2 SYNTAX");
        return false;
    }
    uint8_t cmd = kNumCommands;
    for (uint8_t c = 0; c < kNumCommands; c++) {
        const char *name = kCommands[c].name;
        if (strlen(name) == cmd_len && memcmp(name, p, cmd_len) == 0) {
            cmd = c;
            break;
        }
    }
    if (cmd == kNumCommands) {
        o.str("ER 4 UNKNOWN");
        return false;
    }
    const CommandSpec &spec = kCommands[cmd];
    if (argc != spec.argc) {
        o.str("ER 2 SYNTAX");
        return false;
    }
    for (uint8_t a = 0; a < argc; a++) {
        if (args[a] > spec.max[a]) {
            o.str("ER 3 RANGE");
            return false;
        }
    }
    o.str("OK");
    switch (static_cast<Command>(cmd)) {
        case C_HELLO:
            o.str(" SCOPECTL-LEDRING " LEDRING_FW_VERSION);
            o.space_dec(LEDRING_PROTOCOL);
            o.space_dec(LEDRING_NUM_LEDS);
            break;
        case C_PING:
            o.space_dec(plat_millis());
            break;
        case C_SET:
            for (uint8_t c = 0; c < 3; c++) B.staged[3 * args[0] + c] = static_cast<uint8_t>(args[1 + c]);
            break;
        case C_ALL:
            for (uint8_t l = 0; l < LEDRING_NUM_LEDS; l++)
                for (uint8_t c = 0; c < 3; c++) B.staged[3 * l + c] = static_cast<uint8_t>(args[c]);
            break;
        case C_BRI:
            B.staged_bri = static_cast<uint8_t>(args[0]);
            break;
        case C_SHOW:
            show_staged(true);
            o.space_dec(B.frame_no);
            break;
        case C_OFF:
            switch_off();
            o.space_dec(B.frame_no);
            break;
        case C_BAT:
            o.space_dec(ledring_battery_mv());
            break;
        case C_STATE:
            o.space_dec(B.shown_bri);
            o.space_dec(B.frame_no);
            o.space_dec(B.timeout_ms);
            o.ch(' ');
            for (uint8_t k = 0; k < sizeof(B.shown); k++) o.hex2(B.shown[k]);
            break;
        case C_TIMEOUT:
            B.timeout_ms = args[0];
            break;
        case C_RESET:
            return true;
    }
    return false;
}

void process_line(const uint8_t *line, uint8_t n) {
    // check 2: "*HH" trailer with the right CRC
    if (n < 3 || line[n - 3] != '*' || !is_upper_hex(line[n - 2]) || !is_upper_hex(line[n - 1]) ||
        ledring_crc8(line, static_cast<uint16_t>(n - 3)) !=
            static_cast<uint8_t>((hex_value(line[n - 2]) << 4) | hex_value(line[n - 1]))) {
        send_unsequenced_error(ER_CRC);
        return;
    }
    const uint8_t body_len = static_cast<uint8_t>(n - 3);
    // check 3: readable SEQ
    if (body_len < 3 || !is_upper_hex(line[0]) || !is_upper_hex(line[1]) || line[2] != ':') {
        send_unsequenced_error(ER_SYNTAX);
        return;
    }
    // a live host: restart the silence watchdog
    B.last_request_ms = plat_millis();
    B.watchdog_armed = true;
    // duplicate of the last processed line: repeat the cached reply, do not execute
    if (B.last_line_len == n && memcmp(B.last_line, line, n) == 0) {
        plat_write(B.last_reply, B.last_reply_len);
        return;
    }
    Out o;
    o.len = 0;
    o.ch(static_cast<char>(line[0]));
    o.ch(static_cast<char>(line[1]));
    o.ch(':');
    const bool reboot = execute(line + 3, static_cast<uint8_t>(body_len - 3), o);
    o.finish();
    memcpy(B.last_line, line, n);
    B.last_line_len = n;
    memcpy(B.last_reply, o.buf, o.len);
    B.last_reply_len = o.len;
    o.send();
    if (reboot) plat_reboot();
}

void reset_receiver() {
    B.line_len = 0;
    B.line_too_long = false;
    B.line_lost = false;
}

}  // namespace

uint8_t ledring_crc8(const uint8_t *data, uint16_t len) {
    uint8_t crc = 0;
    while (len--) {
        crc ^= *data++;
        for (uint8_t i = 0; i < 8; i++) crc = (crc & 0x80) ? static_cast<uint8_t>((crc << 1) ^ 0x07) : static_cast<uint8_t>(crc << 1);
    }
    return crc;
}

uint32_t ledring_battery_mv(void) {
    uint32_t sum = 0;
    for (uint8_t i = 0; i < LEDRING_BAT_SAMPLES; i++) sum += plat_adc_read_a0() & 0x3FF;
    return (sum * (uint32_t)VREF_MV * (uint32_t)DIVIDER_NUM) /
           ((uint32_t)LEDRING_BAT_SAMPLES * 1023UL * (uint32_t)DIVIDER_DEN);
}

void ledring_boot(void) {
    memset(&B, 0, sizeof(B));
    B.staged_bri = 255;
    B.timeout_ms = LEDRING_DEFAULT_TIMEOUT_MS;
    B.lowbat_armed = true;
    B.next_bat_check_ms = plat_millis() + LEDRING_BAT_CHECK_PERIOD_MS;
    show_staged(false);  // dark frame; frame_no stays 0
    Out o;
    o.len = 0;
    o.str("!:BOOT " LEDRING_FW_VERSION);
    o.space_dec(LEDRING_PROTOCOL);
    o.finish();
    o.send();
}

void ledring_rx_lost(void) { B.line_lost = true; }

void ledring_rx_byte(uint8_t byte) {
    if (byte != '\n') {
        if (B.line_len < LEDRING_MAX_LINE - 1)
            B.line[B.line_len++] = byte;
        else
            B.line_too_long = true;
        return;
    }
    if (B.line_lost) {
        reset_receiver();
        send_unsequenced_error(ER_BUSY);
        return;
    }
    if (B.line_too_long) {
        reset_receiver();
        send_unsequenced_error(ER_TOOLONG);
        return;
    }
    uint8_t n = B.line_len;
    if (n > 0 && B.line[n - 1] == '\r') n--;
    B.line_len = 0;
    if (n == 0) return;  // empty line: ignored
    process_line(B.line, n);
}

void ledring_poll(void) {
    const uint32_t now = plat_millis();
    if (B.watchdog_armed && B.timeout_ms != 0 && now - B.last_request_ms > B.timeout_ms) {
        B.watchdog_armed = false;
        switch_off();
        send_event("TIMEOUT", false, 0);
    }
    if (static_cast<int32_t>(now - B.next_bat_check_ms) >= 0) {
        B.next_bat_check_ms += LEDRING_BAT_CHECK_PERIOD_MS;
        // far behind (e.g. the host test jumped the clock): resynchronise to the next multiple
        if (static_cast<int32_t>(now - B.next_bat_check_ms) >= 0)
            B.next_bat_check_ms = now - (now % LEDRING_BAT_CHECK_PERIOD_MS) + LEDRING_BAT_CHECK_PERIOD_MS;
        const uint32_t mv = ledring_battery_mv();
        if (B.lowbat_armed && mv < LEDRING_LOWBAT_MV) {
            B.lowbat_armed = false;
            send_event("LOWBAT", true, mv);
        } else if (!B.lowbat_armed && mv >= LEDRING_LOWBAT_REARM_MV) {
            B.lowbat_armed = true;
        }
    }
}
