// LED ring holder: a tube with the NeoPixel ring (LEDs up) in a friction-fit pocket on its floor and
// the diffuser lying on its rim, at ring_to_diffuser above the LEDs (params.scad explains the choice).
// Print black ABS, flange down.  Frame: flange underside at z = 0 (assembly z = base_t), axis at 0, 0.
include <params.scad>

// part parameters
holder_flange_t = 2.0;
holder_wire_hole_d = ring_id - 4;   // the ring's pads (5V, GND, DIN) face down through this hole

module ring_holder() {
    difference() {
        union() {
            cylinder(d = flange_d, h = holder_flange_t);
            cylinder(d = tube_od, h = tube_h);
        }
        translate([0, 0, tube_floor_t]) cylinder(d = tube_id, h = tube_h);
        translate([0, 0, -1]) cylinder(d = holder_wire_hole_d, h = tube_floor_t + 2);
        for (a = [90, 210, 330])
            translate([cos(a) * (tube_od / 2 + 3.5), sin(a) * (tube_od / 2 + 3.5), -1])
                cylinder(d = screw_clear_d, h = holder_flange_t + 2);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) ring_holder();
