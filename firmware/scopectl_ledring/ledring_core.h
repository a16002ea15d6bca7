// Portable protocol core of the scopectl LED-ring firmware (plain C++, no Arduino core, no heap).
// It compiles for the ATmega328P (avr-g++) and on the host (g++/clang++) for tests and fuzzing.
// The protocol is specified in protocols/led-ring-protocol.md.
#ifndef LEDRING_CORE_H
#define LEDRING_CORE_H

#include <stdint.h>

#include "ledring_config.h"

// The whole board state. Kept in one object so the host tests can reset and inspect it.
// shown_bri must stay the FIRST member: the firmware-in-the-loop harness reads it from the emulated RAM
// at the address of the symbol `ledring_board` (offset 0 is the same on the AVR and any host).
struct LedringBoard {
    uint8_t shown_bri;                              // brightness applied to the last shown frame
    uint8_t staged_bri;                             // brightness for the next SHOW
    uint8_t staged[LEDRING_NUM_LEDS * 3];           // RGB, unscaled
    uint8_t shown[LEDRING_NUM_LEDS * 3];            // RGB, unscaled, of the last shown frame
    uint8_t wire[LEDRING_NUM_LEDS * 3];             // GRB, scaled, as last sent
    uint32_t frame_no;
    uint32_t timeout_ms;
    uint32_t last_request_ms;                       // time of the last request with good CRC and SEQ
    bool watchdog_armed;
    bool lowbat_armed;
    uint32_t next_bat_check_ms;
    // receiver
    uint8_t line[LEDRING_MAX_LINE];
    uint8_t line_len;
    bool line_too_long;
    bool line_lost;
    // duplicate detection: last processed line (without "\r\n") and its reply
    uint8_t last_line[LEDRING_MAX_LINE];
    uint8_t last_line_len;                          // 0 = nothing cached
    uint8_t last_reply[LEDRING_MAX_REPLY];
    uint8_t last_reply_len;
};

extern "C" {
extern LedringBoard ledring_board;
}

// CRC-8, polynomial 0x07, init 0, no reflection, no final XOR.
uint8_t ledring_crc8(const uint8_t *data, uint16_t len);

// Power-up / reset: defaults, dark frame (not counted), "!:BOOT" event.
void ledring_boot(void);
// Feed one received byte; a complete line is processed (and answered) when its '\n' arrives.
void ledring_rx_byte(uint8_t byte);
// The receiver lost bytes (overrun / buffer full): the line being received is answered with BUSY.
void ledring_rx_lost(void);
// Periodic work (silence watchdog, low-battery check); call often, at least once per millisecond.
void ledring_poll(void);
// Battery voltage in mV from LEDRING_BAT_SAMPLES reads of A0.
uint32_t ledring_battery_mv(void);

#endif
