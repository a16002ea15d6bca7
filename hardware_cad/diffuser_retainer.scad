// Diffuser retainer: a cap pressed over the top of the ring holder that clamps the diffuser film on the
// tube rim.  Print plate down (as modelled); in the assembly it is upside down.
// Frame: plate at z = 0 .. retainer_t, axis at 0, 0.
include <params.scad>

module diffuser_retainer() {
    difference() {
        cylinder(d = retainer_od, h = retainer_t + retainer_skirt);
        translate([0, 0, -1]) cylinder(d = tube_id, h = retainer_t + 2);
        translate([0, 0, retainer_t]) cylinder(d = tube_od + 2 * clearance, h = retainer_skirt + 1);
    }
}

// rendered on its own; assembly.scad sets ASSEMBLY and places the parts itself
if (is_undef(ASSEMBLY)) diffuser_retainer();
