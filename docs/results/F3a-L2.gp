# F3a-L2: Kernel and weight change vs √h α, L=2 (fc softplus L=2 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.01 459898.7334 69187.80567
0.022 166128.6243 10033.91635
0.046 65430.60894 2499.627258
0.1 23915.30792 2959.859609
0.22 8096.293384 113.6023035
1 969.7798824 96.23016103
100 0.9178131938 0.08583053918
EOD
$P1S0 << EOD
0.01 56.27551838 0.6591398015
0.022 42.56520126 0.4781219266
0.046 34.58891246 0.2713230092
0.1 25.55948085 0.2293990172
0.22 19.12637595 0.1199069558
1 10.93188528 0.06769194004
100 1.4068958 0.04206724786
EOD
set terminal pngcairo enhanced size 1120,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F3a-L2.png"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "kernel"
set xlabel "√h α"
set ylabel "‖Θ - Θ_0‖ / ‖Θ_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "weights"
set xlabel "√h α"
set ylabel "√h ‖w - w_0‖ / ‖w_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
set terminal svg enhanced size 1120,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F3a-L2.svg"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "kernel"
set xlabel "√h α"
set ylabel "‖Θ - Θ_0‖ / ‖Θ_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "weights"
set xlabel "√h α"
set ylabel "√h ‖w - w_0‖ / ‖w_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
unset output
