// ATmega328P platform glue used by the sketch's main loop (scopectl_ledring.ino).
#ifndef LEDRING_PLATFORM_AVR_H
#define LEDRING_PLATFORM_AVR_H

#include <stdint.h>

// Configure the NeoPixel pin, UART, 1 ms timer and ADC (interrupts still disabled).
void avr_platform_init(void);
// True when received bytes are waiting.
bool avr_rx_pending(void);
// Take the oldest received byte; *lost_before is true when bytes were lost just before it.
bool avr_rx_take(uint8_t *byte, bool *lost_before);

#endif
