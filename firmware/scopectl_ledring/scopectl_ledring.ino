// scopectl LED-ring firmware for an ATmega328P at 16 MHz (Arduino Uno / Nano / Pro Trinket 5V).
//
// Protocol: protocols/led-ring-protocol.md. NeoPixel data on pin 6 (PD6), battery divider on A0.
//
// Build: `make -C firmware` (plain avr-gcc + avr-libc, no Arduino core) -> firmware/build/scopectl_ledring.hex,
// flash with avrdude (see firmware/README.md). The sketch folder also opens in the Arduino IDE: the firmware
// brings its own main(), UART, timer, ADC and WS2812 code, so the core's main()/Serial/millis() are not
// linked and this file intentionally has no setup()/loop().
#include <avr/interrupt.h>
#include <avr/sleep.h>

#include "ledring_core.h"
#include "platform_avr.h"

int main(void) {
    avr_platform_init();
    sei();
    ledring_boot();
    set_sleep_mode(SLEEP_MODE_IDLE);  // UART and Timer2 keep running and wake the CPU
    for (;;) {
        uint8_t byte;
        bool lost_before;
        while (avr_rx_take(&byte, &lost_before)) {
            if (lost_before) ledring_rx_lost();
            ledring_rx_byte(byte);
        }
        ledring_poll();
        // Sleep until the next interrupt (1 ms tick or received byte), without missing one that
        // arrives between the check and the sleep instruction (sei; sleep executes sleep first).
        cli();
        if (!avr_rx_pending()) {
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
}
