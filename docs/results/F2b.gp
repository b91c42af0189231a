# F2b: Single-network and ensemble-averaged test error vs √h α (fc softplus L=5 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.01 0.08175 0.0009473647661
0.022 0.07985 0.0006198117994
0.046 0.0819 0.001533514482
0.1 0.07975 0.001990602924
0.22 0.078875 0.001326885451
0.46 0.07625 0.0009886859967
1 0.079625 0.001108583932
2.2 0.081075 0.0007663495721
10 0.0779 0.001266227994
100 0.08383333333 0.001266666667
1000 0.08813333333 0.001442605667
10000 0.08633333333 0.001139200499
EOD
$P0S1 << EOD
0.01 0.0642 0
0.022 0.0639 0
0.046 0.065 0
0.1 0.0655 0
0.22 0.064 0
0.46 0.0635 0
1 0.066 0
2.2 0.0678 0
10 0.0654 0
100 0.0698 0
1000 0.0695 0
10000 0.0693 0
EOD
set terminal pngcairo enhanced size 560,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F2b.png"
set multiplot layout 1,1
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title ""
set xlabel "√h α"
set ylabel "test error ε"
set logscale x; set format x '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "single, h=100", \
     $P0S1 using 1:2:3 with yerrorlines lt 2 pt 2 ps 0.7 title "ensemble, h=100"
unset multiplot
set terminal svg enhanced size 560,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F2b.svg"
set multiplot layout 1,1
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title ""
set xlabel "√h α"
set ylabel "test error ε"
set logscale x; set format x '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "single, h=100", \
     $P0S1 using 1:2:3 with yerrorlines lt 2 pt 2 ps 0.7 title "ensemble, h=100"
unset multiplot
unset output
