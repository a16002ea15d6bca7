// WS2812 ("NeoPixel") output on PD6 for a 16 MHz ATmega328P, cycle-timed inline assembly.
//
// One bit is 20 cycles (1.25 us, 800 kHz). The pin goes high at cycle 0; for a 0-bit it goes low at cycle 6
// (high 375 ns, low 875 ns), for a 1-bit at cycle 13 (high 812.5 ns, low 437.5 ns). Between bytes the low
// phase is 5 cycles longer (loading the next byte), well inside the WS2812's tolerance. Interrupts are off
// for the whole frame (12 LEDs: 288 bits, ~362 us) so nothing can stretch a high phase.
#if defined(__AVR__)

#include <avr/io.h>

#include "ledring_platform.h"

void plat_ws2812_show(const uint8_t *grb, uint8_t len) {
    if (len == 0) return;
    const uint8_t sreg = SREG;
    __asm__ __volatile__("cli" ::: "memory");
    const uint8_t hi = static_cast<uint8_t>(PORTD | (1 << PD6));
    const uint8_t lo = static_cast<uint8_t>(PORTD & ~(1 << PD6));
    uint8_t byte;
    uint8_t bit;
    uint8_t count = len;
    const uint8_t *p = grb;
    __asm__ __volatile__(
        "1:  ld   %[byte], %a[ptr]+   \n\t"  // 2   next byte
        "    ldi  %[bit], 8           \n\t"  // 1
        "2:  out  %[port], %[hi]      \n\t"  // c0  rising edge
        "    rjmp .+0                 \n\t"  // c1-2
        "    rjmp .+0                 \n\t"  // c3-4
        "    sbrs %[byte], 7          \n\t"  // c5 (c5-6 when skipping)
        "    out  %[port], %[lo]      \n\t"  // c6  0-bit: falling edge
        "    rjmp .+0                 \n\t"  // c7-8
        "    rjmp .+0                 \n\t"  // c9-10
        "    rjmp .+0                 \n\t"  // c11-12
        "    out  %[port], %[lo]      \n\t"  // c13 1-bit: falling edge
        "    lsl  %[byte]             \n\t"  // c14
        "    rjmp .+0                 \n\t"  // c15-16
        "    dec  %[bit]              \n\t"  // c17
        "    brne 2b                  \n\t"  // c18-19 -> c20 = next bit's c0
        "    dec  %[count]            \n\t"  // c19 (brne fell through at c18)
        "    brne 1b                  \n\t"  // c20-21, then ld c22-23, ldi c24, out c25
        : [byte] "=&r"(byte), [bit] "=&d"(bit), [count] "+r"(count), [ptr] "+e"(p)
        : [port] "I"(_SFR_IO_ADDR(PORTD)), [hi] "r"(hi), [lo] "r"(lo)
        : "memory");
    SREG = sreg;
}

#endif  // __AVR__
